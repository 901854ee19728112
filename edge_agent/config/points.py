"""Point models of the site map: where a value lives, what it means, when it alarms."""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

from collections.abc import Mapping
from typing import Annotated, Literal, Self

from pydantic import Field, field_validator, model_validator

from edge_agent.config.fields import Number, PointCode
from specs.catalogue import Indicator, default_catalogue
from specs.yamlconf import ConfigModel, KeyPath, raise_at

Table = Literal["holding", "input", "coil", "discrete"]
DataType = Literal["int16", "uint16", "int32", "uint32", "float32", "float64", "bool"]
Order = Literal["big", "little"]

REGISTER_COUNT: Mapping[DataType, int] = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "float64": 4,
    "bool": 1,
}
"""How many 16-bit registers (or coils) each data type occupies."""

LAST_ADDRESS = 65535
"""Modbus addresses are 16 bits: a value must end at or before this register."""

_BIT_TABLES = ("coil", "discrete")
_THRESHOLD_ORDER = ("low_low", "low", "high", "high_high")


class Address(ConfigModel):
    """Where a value lives in the device's Modbus tables and how its bytes are laid out."""

    table: Table
    start: Annotated[int, Field(strict=True, ge=0, le=LAST_ADDRESS)]
    type: DataType
    byte_order: Order = "big"
    word_order: Order = "big"
    bit: Annotated[int, Field(strict=True, ge=0, le=15)] | None = None

    @property
    def register_count(self) -> int:
        """Return how many registers (or coils) the value occupies."""
        return REGISTER_COUNT[self.type]

    @model_validator(mode="after")
    def _fits(self) -> Self:
        problems: list[tuple[KeyPath, str]] = []
        if self.table in _BIT_TABLES and self.type != "bool":
            problems.append(
                (("type",), f"a {self.table} table holds single bits: type must be bool")
            )
        if self.bit is not None and (self.table in _BIT_TABLES or self.type != "bool"):
            problems.append((("bit",), "bit applies only to type bool in a holding or input table"))
        end = self.start + self.register_count - 1
        if end > LAST_ADDRESS:
            problems.append(
                (
                    ("start",),
                    (
                        f"{self.type} needs {self.register_count} registers: from {self.start} "
                        f"it ends at {end}, past the last address {LAST_ADDRESS}"
                    ),
                )
            )
        if problems:
            raise_at(problems)
        return self


class Thresholds(ConfigModel):
    """Alarm limits in the point's unit; any may be left out, those given must be ordered."""

    low_low: Number | None = None
    low: Number | None = None
    high: Number | None = None
    high_high: Number | None = None

    def as_dict(self) -> dict[str, float]:
        """Return the limits that are set, by name."""
        values = ((name, getattr(self, name)) for name in _THRESHOLD_ORDER)
        return {name: value for name, value in values if value is not None}

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        problems: list[tuple[KeyPath, str]] = []
        highest: tuple[str, float] | None = None
        for name, value in self.as_dict().items():
            if highest is not None and value < highest[1]:
                problems.append(
                    (
                        (name,),
                        (
                            f"{name} ({value:g}) is below {highest[0]} ({highest[1]:g}); "
                            "thresholds must be ordered low_low <= low <= high <= high_high"
                        ),
                    )
                )
            if highest is None or value >= highest[1]:
                highest = (name, value)
        if problems:
            raise_at(problems)
        return self


class PointConfig(ConfigModel):
    """One value an instrument reports.

    `value = raw * scale + offset` gives the value in `unit` (the unit the instrument reports;
    by default the indicator's canonical unit). `thresholds` and `deadband` are in that unit
    too; the agent converts everything to the canonical unit of the catalogue.
    """

    point: PointCode
    quota: str
    unit: str | None = None
    address: Address
    scale: Number = 1.0
    offset: Number = 0.0
    thresholds: Thresholds = Field(default_factory=Thresholds)
    deadband: Annotated[Number, Field(ge=0)] = 0.0

    @property
    def indicator(self) -> Indicator:
        """Return the catalogue entry of this point's quota."""
        indicator = default_catalogue().get(self.quota)
        if indicator is None:  # validation guarantees it; kept for type narrowing
            raise LookupError(f"quota {self.quota} is not in the catalogue")
        return indicator

    @field_validator("quota")
    @classmethod
    def _known_quota(cls, quota: str) -> str:
        if default_catalogue().get(quota) is None:
            raise ValueError(
                f"quota {quota} is not in the catalogue (`edge-agent catalogue` lists them)"
            )
        return quota

    @field_validator("scale")
    @classmethod
    def _nonzero_scale(cls, scale: float) -> float:
        if scale == 0:
            raise ValueError("scale must not be 0: every reading would be the offset")
        return scale

    @model_validator(mode="after")
    def _accepted_unit(self) -> Self:
        units = self.indicator.units
        if self.unit is not None and self.unit not in units:
            raise_at(
                [
                    (
                        ("unit",),
                        (
                            f"unit {self.unit!r} is not accepted for {self.quota}; "
                            f"accepted: {', '.join(units)}"
                        ),
                    )
                ]
            )
        return self


class TemplateConfig(ConfigModel):
    """An instrument model: the points every device of this model has.

    A device says `template: NAME` and `point_prefix: "..."`; each template point becomes
    `point_prefix + point` on that device, so two devices of one model get distinct codes.
    """

    points: tuple[PointConfig, ...]

    @field_validator("points")
    @classmethod
    def _some_points(cls, points: tuple[PointConfig, ...]) -> tuple[PointConfig, ...]:
        # A length constraint would also fire when items fail, adding a bogus second error.
        if not points:
            raise ValueError("a template needs at least one point")
        return points

    @model_validator(mode="after")
    def _unique_codes(self) -> Self:
        problems: list[tuple[KeyPath, str]] = []
        first: dict[str, int] = {}
        for index, point in enumerate(self.points):
            if point.point in first:
                problems.append(
                    (
                        ("points", index, "point"),
                        f"code {point.point!r} is already used by points[{first[point.point]}]",
                    )
                )
            first.setdefault(point.point, index)
        if problems:
            raise_at(problems)
        return self
