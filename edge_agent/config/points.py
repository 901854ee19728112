"""Point models of the site map: where a value lives, what it means, when it alarms.

Where a value lives depends on the device's driver, and the point says it with one key:
`address` for Modbus (TCP and RTU), `node` for OPC UA, `pattern` for serial ASCII. A point
alone cannot know its driver (template points serve any device), so the device checks that
each of its points has the right key and no other (`POINT_SOURCE_KEYS`).
"""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

import itertools
import re
from collections.abc import Iterator, Mapping
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BeforeValidator, Field, field_validator, model_validator

from configkit.durations import format_duration
from configkit.fields import ConfigModel, Duration, duration_bounds
from configkit.issues import KeyPath
from configkit.validation import raise_at
from drivers.opcua.model import check_node_id
from edge_agent.config.fields import Number, PointCode
from specs.catalogue import Indicator, default_catalogue

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

THRESHOLD_LEVELS: Mapping[str, str] = {
    "low_low": "LL",
    "low": "L",
    "high": "H",
    "high_high": "HH",
    "level1": "L1",
    "level2": "L2",
    "alarm": "alarm",
    "power_off": "power_off",
    "restore": "power_off",
    "blue": "blue",
    "yellow": "yellow",
    "orange": "orange",
    "red": "red",
}
"""Each `thresholds` key and the alarm level (catalogue vocabulary) it belongs to.

`restore` is not a level of its own: it is where a coal `power_off` alarm clears.
"""

THRESHOLD_FAMILIES: tuple[tuple[str, ...], ...] = (
    _THRESHOLD_ORDER,
    ("level1", "level2"),
    ("alarm", "power_off", "restore"),
    ("blue", "yellow", "orange", "red"),
)
"""Threshold keys that work together; a catalogue default fills a family a point leaves empty."""

CATALOGUE_THRESHOLD_NAMES: Mapping[str, str] = {
    **{name: name for name in THRESHOLD_LEVELS},
    **{level: name for name, level in THRESHOLD_LEVELS.items() if name != "restore"},
}
"""The catalogue names a default threshold by its level (`L1`) or by a key name (`level1`)."""

COLOURS = ("blue", "yellow", "orange", "red")
"""Tailings alarm colours, least severe first."""

RATE_LEVEL = "rate"
"""The vocabulary level of a rate-of-change alarm."""

RATE_PERIODS: Mapping[str, float] = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
"""Time units a rate may be expressed in (`mm/h`, `mm/d`), in seconds."""

SourceKey = Literal["address", "node", "pattern"]
_SOURCE_KEYS: tuple[SourceKey, ...] = ("address", "node", "pattern")

POINT_SOURCE_KEYS: Mapping[str, SourceKey] = {
    "modbus_tcp": "address",
    "modbus_rtu": "address",
    "opcua": "node",
    "serial": "pattern",
}
"""The one key that says where a point's value lives, by driver."""

_SOURCE_HINTS: Mapping[SourceKey, str] = {
    "address": "their Modbus address, such as {table: holding, start: 0, type: float32}",
    "node": "their OPC UA node id, such as 'ns=2;s=Slope.G1.X'",
    "pattern": "a regular expression with a (?P<value>...) group, such as 'H2S=(?P<value>[0-9.]+)'",
}


def point_source_problems(driver: str, point: object) -> list[tuple[KeyPath, str]]:
    """Say what is wrong with where a point of a `driver` device reads its value.

    Works on the raw mapping from YAML (so that it can run alongside field validation and
    every problem shows at once) as well as on a `PointConfig`. Paths are relative to the
    point; anything that is not a mapping is left to field validation.
    """
    wanted = POINT_SOURCE_KEYS.get(driver)
    if wanted is None:
        return []
    if isinstance(point, PointConfig):
        given = {key for key in _SOURCE_KEYS if getattr(point, key) is not None}
    elif isinstance(point, dict):
        given = {key for key in _SOURCE_KEYS if point.get(key) is not None}
    else:
        return []
    problems: list[tuple[KeyPath, str]] = []
    if wanted not in given:
        problems.append(
            ((wanted,), f"missing required key: {driver} points need {_SOURCE_HINTS[wanted]}")
        )
    for key in sorted(given - {wanted}):
        users = " and ".join(d for d, k in POINT_SOURCE_KEYS.items() if k == key)
        problems.append(
            (
                (key,),
                f"{key} applies only to {users} points; {driver} points are read by `{wanted}`",
            )
        )
    return problems


def _check_pattern(pattern: str) -> str:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"pattern {pattern!r} is not a valid regular expression: {exc}") from None
    if "value" not in regex.groupindex:
        raise ValueError(
            f"pattern {pattern!r} has no named group `value`: write the number's part as "
            "(?P<value>-?[0-9.]+)"
        )
    return pattern


LinePattern = Annotated[str, AfterValidator(_check_pattern)]
"""A regular expression (Python `re` syntax) with a named group `value`, checked at load."""

NodeId = Annotated[str, AfterValidator(check_node_id)]
"""An OPC UA node id string: `ns=2;s=Name`, `i=2258`, `nsu=<uri>;s=Name`, ..."""


def _one_or_many(value: object) -> object:
    # `rate: {...}` is the common case; a list gives one point both mm/h and mm/d alarms.
    return [value] if isinstance(value, dict) else value


class Address(ConfigModel):
    """Where a value lives in the device's Modbus tables and how its bytes are laid out."""

    table: Table
    """Which Modbus table: holding or input registers, coils or discrete inputs."""
    start: Annotated[int, Field(strict=True, ge=0, le=LAST_ADDRESS)]
    """The first register's (or coil's) address, 0-based as on the wire."""
    type: DataType
    """How the registers encode the value; 32-bit types take two registers, float64 four."""
    byte_order: Order = "big"
    """Byte order inside each register (big: the Modbus standard)."""
    word_order: Order = "big"
    """Register order inside a multi-register value; many devices swap words (little). `probe
    --guess-order` finds it.
    """
    bit: Annotated[int, Field(strict=True, ge=0, le=15)] | None = None
    """For a bit packed in a register: its index, 0 (least significant) to 15."""

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
    """Alarm limits in the point's unit; any may be left out, those given must be ordered.

    Families: `low_low/low/high/high_high` (H/HH/L/LL), `level1/level2` (gas, GB/T 50493),
    `alarm/power_off/restore` (coal methane: `power_off` clears only below `restore`) and
    `blue/yellow/orange/red` (tailings colours, rising or falling in step).
    """

    low_low: Number | None = None
    """Low-low (LL) limit."""
    low: Number | None = None
    """Low (L) limit."""
    high: Number | None = None
    """High (H) limit."""
    high_high: Number | None = None
    """High-high (HH) limit."""
    level1: Number | None = None
    """Gas first-level alarm (GB/T 50493)."""
    level2: Number | None = None
    """Gas second-level alarm (GB/T 50493)."""
    alarm: Number | None = None
    """Coal-mine methane alarm limit."""
    power_off: Number | None = None
    """Coal-mine methane power-off limit."""
    restore: Number | None = None
    """Coal-mine methane power restore limit (below `power_off`)."""
    blue: Number | None = None
    """Tailings blue (fourth-level) limit."""
    yellow: Number | None = None
    """Tailings yellow limit."""
    orange: Number | None = None
    """Tailings orange limit."""
    red: Number | None = None
    """Tailings red (first-level) limit."""

    def as_dict(self) -> dict[str, float]:
        """Return the limits that are set, by name, family by family."""
        names = (name for family in THRESHOLD_FAMILIES for name in family)
        values = ((name, getattr(self, name)) for name in names)
        return {name: value for name, value in values if value is not None}

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        problems = [
            *_rising(self, _THRESHOLD_ORDER, "low_low <= low <= high <= high_high"),
            *_rising(self, ("level1", "level2"), "level1 <= level2"),
            *_rising(self, ("alarm", "power_off"), "alarm <= power_off"),
            *self._restore_problems(),
            *self._colour_problems(),
        ]
        if problems:
            raise_at(problems)
        return self

    def _restore_problems(self) -> list[tuple[KeyPath, str]]:
        if self.restore is None:
            return []
        if self.power_off is None:
            return [(("restore",), "restore applies only with power_off")]
        if self.restore >= self.power_off:
            return [
                (
                    ("restore",),
                    (
                        f"restore ({self.restore:g}) must be below power_off "
                        f"({self.power_off:g}): power comes back only below it"
                    ),
                )
            ]
        return []

    def _colour_problems(self) -> list[tuple[KeyPath, str]]:
        given = [(name, value) for name in COLOURS if (value := getattr(self, name)) is not None]
        problems: list[tuple[KeyPath, str]] = []
        rule = (
            "colour thresholds must rise (blue < yellow < orange < red) or fall "
            "(blue > yellow > orange > red) in step"
        )
        direction = 0.0
        for (before, low), (name, value) in itertools.pairwise(given):
            step = value - low
            if step == 0 or (direction and step * direction < 0):
                problems.append(((name,), f"{name} ({value:g}) after {before} ({low:g}): {rule}"))
                continue
            direction = direction or step
        return problems


def _rising(thresholds: Thresholds, names: tuple[str, ...], rule: str) -> list[tuple[KeyPath, str]]:
    problems: list[tuple[KeyPath, str]] = []
    highest: tuple[str, float] | None = None
    for name in names:
        value = getattr(thresholds, name)
        if value is None:
            continue
        if highest is not None and value < highest[1]:
            problems.append(
                (
                    (name,),
                    (
                        f"{name} ({value:g}) is below {highest[0]} ({highest[1]:g}); "
                        f"thresholds must be ordered {rule}"
                    ),
                )
            )
        if highest is None or value >= highest[1]:
            highest = (name, value)
    return problems


def rate_unit_parts(unit: str) -> tuple[str, str] | None:
    """Split a rate unit such as `mm/h` into (`mm`, `h`); None when it has no known period."""
    amount, slash, period = unit.rpartition("/")
    if not slash or not amount or period not in RATE_PERIODS:
        return None
    return amount, period


class RateConfig(ConfigModel):
    """A rate-of-change alarm: the value's change over `window`, in `unit` (such as `mm/h`).

    The alarm raises when the change's magnitude per period reaches `limit` and clears when
    it falls below `limit - deadband`.
    """

    window: Annotated[Duration, duration_bounds(above=0)]
    """The period the change is measured over."""
    limit: Annotated[Number, Field(gt=0)]
    """The change per `unit` period at which the alarm raises."""
    unit: str
    """The rate's unit, a value unit per time such as `mm/h` or `mm/d`."""
    deadband: Annotated[Number, Field(ge=0)] = 0.0
    """The alarm clears below `limit - deadband`."""

    @field_validator("unit")
    @classmethod
    def _known_period(cls, unit: str) -> str:
        if rate_unit_parts(unit) is None:
            raise ValueError(
                f"rate unit {unit!r} must be <unit>/<period> with period "
                f"{', '.join(RATE_PERIODS)}, such as mm/h or mm/d"
            )
        return unit

    @model_validator(mode="after")
    def _deadband_below_limit(self) -> Self:
        if self.deadband >= self.limit:
            raise_at(
                [
                    (
                        ("deadband",),
                        f"deadband ({self.deadband:g}) must be below limit ({self.limit:g})",
                    )
                ]
            )
        return self


class PointConfig(ConfigModel):
    """One value an instrument reports.

    Exactly one of `address` (Modbus), `node` (OPC UA) or `pattern` (serial ASCII) says where
    it is read; which one is checked by the device that reads it (`point_source_problems`).
    `value = raw * scale + offset` gives the value in `unit` (the unit the instrument reports;
    by default the indicator's canonical unit). `thresholds` and `deadband` are in that unit
    too; the agent converts everything to the canonical unit of the catalogue. Every threshold
    and `rate` must name a level of the indicator's alarm vocabulary; a threshold family the
    point leaves empty takes the catalogue's default thresholds, if any.
    """

    point: PointCode
    """The point's code (测点编码), unique across the gateway after template prefixes."""
    quota: str
    """The indicator (指标) code from the catalogue (`edge-agent catalogue`): decides unit,
    plausible range and alarms.
    """
    unit: str | None = None
    """The unit the instrument reports in; default: the indicator's canonical unit."""
    address: Address | None = None
    """Modbus: where the value is (for modbus_tcp and modbus_rtu devices)."""
    node: NodeId | None = None
    """OPC UA: the node id, such as `ns=2;s=Tank1.Level`."""
    pattern: LinePattern | None = None
    """Serial ASCII: a regular expression with a `value` group that finds the value in a frame."""
    scale: Number = 1.0
    """`value = raw * scale + offset`."""
    offset: Number = 0.0
    """`value = raw * scale + offset`."""
    thresholds: Thresholds = Field(default_factory=Thresholds)
    """Alarm limits in `unit`; families left empty take the catalogue's defaults."""
    deadband: Annotated[Number, Field(ge=0)] = 0.0
    """An alarm clears only when the value is back past its limit by this much (in `unit`)."""
    rate: Annotated[tuple[RateConfig, ...], BeforeValidator(_one_or_many)] = ()
    """Rate-of-change alarms (one mapping or a list)."""

    def catalogue_defaults(self) -> dict[str, float]:
        """Return the catalogue's default thresholds (canonical unit) this point inherits.

        A family (such as `level1/level2`) takes the defaults only when the point sets none
        of its keys, so a point never mixes its own limits with defaults of the same family.
        """
        indicator = self.indicator
        own = self.thresholds.as_dict()
        named = {
            key: value
            for name, value in indicator.thresholds.items()
            if (key := CATALOGUE_THRESHOLD_NAMES.get(name)) is not None
            and THRESHOLD_LEVELS[key] in indicator.alarms
        }
        return {
            name: named[name]
            for family in THRESHOLD_FAMILIES
            if not any(name in own for name in family)
            for name in family
            if name in named
        }

    def effective_rates(self) -> tuple[RateConfig, ...]:
        """Return the point's rate alarms, or the catalogue's default ones when it sets none."""
        indicator = self.indicator
        if self.rate or RATE_LEVEL not in indicator.alarms:
            return self.rate
        return tuple(
            RateConfig(window=default.window, limit=default.value, unit=default.unit)
            for default in indicator.defaults
            if default.level == RATE_LEVEL
            and default.edge == "raise"
            and default.window is not None
            and (parts := rate_unit_parts(default.unit)) is not None
            and parts[0] in indicator.units
        )

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

    @model_validator(mode="after")
    def _alarm_vocabulary(self) -> Self:
        problems = [*self._threshold_problems(), *self._rate_problems()]
        if problems:
            raise_at(problems)
        return self

    def _threshold_problems(self) -> Iterator[tuple[KeyPath, str]]:
        indicator = self.indicator
        for name in self.thresholds.as_dict():
            level = THRESHOLD_LEVELS[name]
            if level not in indicator.alarms:
                yield (
                    ("thresholds", name),
                    (
                        f"threshold {name} (alarm level {level}) is not in the alarm vocabulary"
                        f" of {self.quota}: {_vocabulary(indicator)}"
                    ),
                )

    def _rate_problems(self) -> Iterator[tuple[KeyPath, str]]:
        indicator = self.indicator
        if self.rate and RATE_LEVEL not in indicator.alarms:
            yield (
                ("rate",),
                (
                    f"rate alarms are not in the alarm vocabulary of {self.quota}: "
                    f"{_vocabulary(indicator)}"
                ),
            )
            return
        windows: dict[float, int] = {}
        for index, rate in enumerate(self.rate):
            parts = rate_unit_parts(rate.unit)
            amount = parts[0] if parts else rate.unit
            if amount not in indicator.units:
                yield (
                    ("rate", index, "unit"),
                    (
                        f"rate unit {rate.unit!r}: {amount!r} is not accepted for "
                        f"{self.quota}; accepted: {', '.join(indicator.units)}"
                    ),
                )
            if rate.window in windows:
                yield (
                    ("rate", index, "window"),
                    (
                        f"a rate over {format_duration(rate.window)} is already set by "
                        f"rate[{windows[rate.window]}]"
                    ),
                )
            windows.setdefault(rate.window, index)


def _vocabulary(indicator: Indicator) -> str:
    return ", ".join(indicator.alarms) if indicator.alarms else "none (it raises no alarms)"


class TemplateConfig(ConfigModel):
    """An instrument model: the points every device of this model has.

    A device says `template: NAME` and `point_prefix: "..."`; each template point becomes
    `point_prefix + point` on that device, so two devices of one model get distinct codes.
    """

    points: tuple[PointConfig, ...]
    """The points of every device of this model, coded `point_prefix + point` on each device."""

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
