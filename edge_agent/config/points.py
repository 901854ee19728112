"""Point models of the site map: one value an instrument reports, and instrument templates.

A point says where its value is read (an `Address`, an OPC UA node or a serial pattern; which
key a device's driver needs is in `point_source`), what it means (its quota in the catalogue)
and when it alarms (`limits`).
"""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

import re
from collections.abc import Iterator
from typing import Annotated, Final, Self

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from configkit.durations import format_duration
from configkit.fields import ConfigModel, at_least_items
from configkit.issues import KeyPath
from configkit.validation import raise_at
from drivers.opcua.model import check_node_id
from edge_agent.config.address import Address
from edge_agent.config.catalogue_limits import PointLimits, deadband_problems, limit_problems
from edge_agent.config.fields import Number, PointCode
from edge_agent.config.limits import (
    CATALOGUE_THRESHOLD_NAMES,
    THRESHOLD_FAMILIES,
    THRESHOLD_LEVELS,
    RateConfig,
    Thresholds,
    rate_unit_parts,
)
from specs.catalogue import RATE_LEVEL, Catalogue, Indicator

CATALOGUE = "catalogue"
"""Validation-context key: the `Catalogue` quotas are checked against (the loader passes it)."""


def _catalogue(info: ValidationInfo) -> Catalogue:
    catalogue = info.context.get(CATALOGUE) if isinstance(info.context, dict) else None
    if not isinstance(catalogue, Catalogue):
        # A caller's mistake, not the config file's: a TypeError passes through pydantic.
        raise TypeError(
            f"points are validated against a catalogue: pass context={{{CATALOGUE!r}: catalogue}}"
        )
    return catalogue


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
"""An OPC UA node id string: `ns=2;s=Name`, `i=2258`, `nsu=<uri>;s=Name`, ...; not `svr=`."""


def _one_or_many(value: object) -> object:
    # `rate: {...}` is the common case; a list gives one point both mm/h and mm/d alarms.
    return [value] if isinstance(value, dict) else value


_NO_THRESHOLDS: Final = Thresholds()
"""The limits of every point that sets none: frozen, so one instance serves them all (a fresh
one per point held 760 bytes each, 0.75 MB at 1,000 tags in a running agent, G7)."""


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
    """OPC UA: the node id, such as `ns=2;s=Tank1.Level`; a node of another server (`svr=`) is
    refused.
    """
    pattern: LinePattern | None = None
    """Serial ASCII: a regular expression with a `value` group that finds the value in a frame."""
    scale: Number = 1.0
    """`value = raw * scale + offset`."""
    offset: Number = 0.0
    """`value = raw * scale + offset`."""
    thresholds: Thresholds = Field(default_factory=lambda: _NO_THRESHOLDS)
    """Alarm limits in `unit`; families left empty take the catalogue's defaults. At its exact
    value a limit compares as the catalogue words that level's threshold (`edge-agent
    catalogue`), whether the number is the default or the site's own: oxygen `L <19.5` raises
    below the number, not at it (and so does a site's `low: 18` below 18); methane `alarm >=1`
    raises at it. A level the catalogue words no comparison for raises at its number (`>=`
    rising, `<=` falling). A default the catalogue binds as a limit (`edge-agent catalogue
    --json`: `binding: limit`; CO 24 ppm, combustible gas L1 25 / L2 50 %LEL) may be set
    stricter, never laxer, nor left out of a family the point sets: a rising raise no higher, a
    falling one no lower, a restore (clear below) no higher, and `power_off` without `restore`
    clears at `power_off - deadband`, which must then be no higher than a restore limit.
    Methane's defaults (alarm 1.0, power-off 1.5, restore 1.0 %CH4) are references, not limits:
    they are the working face's, and other locations of a mine lawfully differ (above a coal
    bunker 1.50 / 1.50 / 1.49), which a site map has no key to tell."""
    deadband: Annotated[Number, Field(ge=0)] = 0.0
    """An alarm clears only when the value is back past its limit by this much (in `unit`): at
    the clear point itself iff the limit's comparison is strict (`>`, `<`). A deadband that puts
    a clear point where no value of the indicator's plausible range reaches it (methane alarm 1
    with deadband 1: clear below 0) is refused: the alarm would never clear."""
    rate: Annotated[tuple[RateConfig, ...], BeforeValidator(_one_or_many)] = ()
    """Rate-of-change alarms (one mapping or a list)."""

    # The quota's entry in the catalogue this point was validated against (`_bind_indicator`).
    _indicator: Indicator | None = PrivateAttr(default=None)

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
        """Return the entry of this point's quota in the catalogue it was validated against."""
        if self._indicator is None:  # validation binds it; kept for type narrowing
            raise LookupError(f"point {self.point} was not validated against a catalogue")
        return self._indicator

    @field_validator("quota")
    @classmethod
    def _known_quota(cls, quota: str, info: ValidationInfo) -> str:
        if _catalogue(info).get(quota) is None:
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

    # Defined before the checks that read `indicator`: pydantic runs them in this order.
    @model_validator(mode="after")
    def _bind_indicator(self, info: ValidationInfo) -> Self:
        indicator = _catalogue(info).get(self.quota)
        if indicator is None:  # `_known_quota` passed, so the catalogue has it
            raise LookupError(f"quota {self.quota} is not in the catalogue")
        self._indicator = indicator
        return self

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

    @model_validator(mode="after")
    def _within_catalogue_limits(self) -> Self:
        limits = PointLimits(
            own=self.thresholds.as_dict(),
            defaults=self.catalogue_defaults(),
            deadband=self.deadband,
            unit=self.unit or self.indicator.unit,
            indicator=self.indicator,
        )
        problems = [*limit_problems(limits), *deadband_problems(limits)]
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

    points: Annotated[
        tuple[PointConfig, ...], at_least_items(1, "a template needs at least one point")
    ]
    """The points of every device of this model, coded `point_prefix + point` on each device."""

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
