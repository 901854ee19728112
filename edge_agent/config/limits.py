"""A point's alarm limits: thresholds by alarm level and rate-of-change alarms.

Threshold keys come in families (`low_low/low/high/high_high`, `level1/level2`,
`alarm/power_off/restore`, the tailings colours); each key belongs to a level of the catalogue's
alarm vocabulary (`THRESHOLD_LEVELS`). A rate alarm watches the change over a window, in a unit
per period such as `mm/h`.
"""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

import itertools
from collections.abc import Iterable, Mapping
from typing import Annotated, Self

from pydantic import Field, field_validator, model_validator

from configkit.fields import ConfigModel, Duration, duration_bounds
from configkit.issues import KeyPath
from configkit.validation import raise_at
from edge_agent.config.fields import Number

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


def colours_rise(setpoints: Iterable[float | None]) -> bool:
    """Whether the colour alarms raise on a rising value (falling when the setpoints descend).

    `setpoints`: the colours' setpoints in COLOURS order, None where not set. Config
    validation refuses unordered colours, so the first step gives the direction.
    """
    given = [value for value in setpoints if value is not None]
    return len(given) < 2 or given[1] > given[0]  # noqa: PLR2004 - a step needs two values


RATE_PERIODS: Mapping[str, float] = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
"""Time units a rate may be expressed in (`mm/h`, `mm/d`), in seconds."""


class Thresholds(ConfigModel):
    """Alarm limits in the point's unit; any may be left out, those given must be ordered.

    At its exact value a limit compares as the catalogue words that level's threshold (see
    `PointConfig.thresholds`).

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
    """Coal-mine methane power restore limit (below `power_off`); compared as the catalogue's
    restore is worded (methane `<1`: power comes back below it, not at it)."""
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

    The alarm raises when the change's magnitude per period passes `limit` (`>=`, or `>` where
    the catalogue words the rate over this window so) and clears once it is back past
    `limit - deadband` (below it; at it too when the comparison is `>`).
    """

    window: Annotated[Duration, duration_bounds(above=0)]
    """The period the change is measured over."""
    limit: Annotated[Number, Field(gt=0)]
    """The change per `unit` period at (`>=`) or beyond (`>`) which the alarm raises: over a
    window the catalogue gives a rate for, as that rate is worded whatever the number (slopes,
    GB 51214: `1d` `> 10 mm/d` does not raise at the number, `1h` `>= 5 mm/h` does); over
    another window at the number (`>=`)."""
    unit: str
    """The rate's unit, a value unit per time such as `mm/h` or `mm/d`."""
    deadband: Annotated[Number, Field(ge=0)] = 0.0
    """The alarm clears below `limit - deadband` (at it too when the limit compares `>`)."""

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
