"""Alarm rules: what the evaluator checks for each point, in canonical units.

Rules are plain frozen data compiled once from the resolved site map (`build.py`); the
evaluator (`evaluate.py`) walks them. Every rule owns one or more *slots*: the text
`{subject}/{name}` under which its alarm is active (`T001-LT-01/HH`, `S01-GX-01/rate.1h`,
`item:dam-surface/yellow`). A slot's alarm_id is the slot plus a serial, so a clear always
carries the id of the raise it ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

COLOURS = ("blue", "yellow", "orange", "red")
"""Tailings colours, least severe first; a point's colour level is 1 (blue) .. 4 (red)."""

ESCALATION: tuple[tuple[str, int, str], ...] = (
    ("blue", 4, "yellow"),
    ("yellow", 3, "orange"),
    ("orange", 2, "red"),
)
"""Within one monitoring item, `count` points at `colour` or above lift the item to `to`.

Tailings design code §5.5.2 (spec-facts 2.3). Each step lifts by exactly one colour, so the
item's colour is never more than one above its worst point's.
"""

ITEM_PREFIX = "item:"
"""Slots of monitoring items start with this; point codes cannot contain `:`."""

ITEM_UNIT = "points"
"""The unit of an escalation event's value and threshold: a number of points."""

HELD_UNIT = "s"
"""The unit of a held-condition overtime event's value and threshold: seconds held."""


def past(value: float, limit: float, *, upward: bool, inclusive: bool) -> bool:
    """Whether `value` lies past `limit` (above it if `upward`), `limit` itself iff `inclusive`."""
    if value == limit:
        return inclusive
    return value > limit if upward else value < limit


@dataclass(frozen=True, slots=True)
class LevelRule:
    """A setpoint alarm: raise once the value is past `setpoint`, clear once back past `clear_at`.

    Rising rules raise above `setpoint` and clear below `clear_at`; falling rules the other way.
    `inclusive` says whether the setpoint itself raises (`>=`/`<=`, else `>`/`<`), as the
    catalogue words the threshold; `clear_inclusive` whether `clear_at` itself clears, which
    the builder makes the opposite of `inclusive` unless the catalogue words the clear (coal
    restore `< 1.0`). Between the two the alarm holds, which is the deadband (or, for coal
    power-off, the restore limit); with no deadband every value is on exactly one side.
    """

    slot: str
    level: str
    setpoint: float
    clear_at: float
    rising: bool
    inclusive: bool = True
    clear_inclusive: bool = False

    def reached(self, value: float) -> bool:
        """Whether `value` raises this alarm."""
        return past(value, self.setpoint, upward=self.rising, inclusive=self.inclusive)

    def released(self, value: float) -> bool:
        """Whether `value` clears this alarm."""
        return past(value, self.clear_at, upward=not self.rising, inclusive=self.clear_inclusive)


@dataclass(frozen=True, slots=True)
class RateRule:
    """A rate-of-change alarm: the value's change over `window` seconds, in `unit`.

    `per_second` turns canonical units per second into `unit`. Raises at `rate >= limit`
    (`rate > limit` unless `inclusive`) and clears once the rate no longer passes `clear_at`
    that way (`<` resp. `<=`); the rate is the magnitude of the change, either way.
    """

    slot: str
    window: float
    limit: float
    clear_at: float
    unit: str
    per_second: float
    inclusive: bool = True

    def reached(self, rate: float) -> bool:
        """Whether `rate` raises this alarm."""
        return past(rate, self.limit, upward=True, inclusive=self.inclusive)

    def released(self, rate: float) -> bool:
        """Whether `rate` clears this alarm."""
        return past(rate, self.clear_at, upward=False, inclusive=not self.inclusive)


@dataclass(frozen=True, slots=True)
class CompareRule:
    """A derived alarm: raise while the value is above a limit, clear at `limit - deadband`.

    The limit is fixed (`limit`) or the latest usable value of `limit_point`. Over-staff,
    over-quantity and overtime of a duration point are all this rule.
    """

    slot: str
    level: str
    unit: str
    deadband: float
    limit: float | None = None
    limit_point: str | None = None


@dataclass(frozen=True, slots=True)
class HeldRule:
    """Overtime of a condition: raise once it has held beyond `limit` seconds, clear at its end.

    Held exactly `limit` is allowed, as a duration point at its limit is.

    The condition is `value > above` and/or `value < below` (canonical unit).
    """

    slot: str
    level: str
    limit: float
    above: float | None = None
    below: float | None = None

    def holds(self, value: float) -> bool:
        """Whether `value` meets the condition."""
        return (self.above is None or value > self.above) and (
            self.below is None or value < self.below
        )


@dataclass(frozen=True, slots=True)
class ItemRule:
    """One tailings monitoring item: its points' colours escalate the item's colour."""

    item: str
    points: tuple[str, ...]

    def slot(self, colour: str) -> str:
        """The slot of the item's alarm at `colour`."""
        return f"{ITEM_PREFIX}{self.item}/{colour}"


@dataclass(frozen=True, slots=True)
class PointRules:
    """Everything a reading of one point is checked against.

    `levels` run least severe first within each family; `tracked` says another point's
    derived alarm compares against this point's latest value.
    """

    levels: tuple[LevelRule, ...] = ()
    rates: tuple[RateRule, ...] = ()
    compares: tuple[CompareRule, ...] = ()
    held: tuple[HeldRule, ...] = ()
    items: tuple[ItemRule, ...] = ()
    tracked: bool = False


@dataclass(frozen=True, slots=True)
class AlarmRules:
    """The whole site's alarm rules, by the point whose readings trigger them."""

    points: Mapping[str, PointRules] = field(default_factory=dict)
    slots: frozenset[str] = frozenset()
    """Every slot some rule can raise; an active alarm outside it lost its rule."""
    site_points: frozenset[str] = frozenset()
    """Every point of the site map, with alarms or without."""

    @property
    def rate_slots(self) -> frozenset[str]:
        """Slots whose rules keep a window of samples."""
        return frozenset(r.slot for p in self.points.values() for r in p.rates)

    @property
    def held_slots(self) -> frozenset[str]:
        """Slots whose rules remember since when a condition holds."""
        return frozenset(r.slot for p in self.points.values() for r in p.held)

    @property
    def tracked_points(self) -> frozenset[str]:
        """Points whose latest value a derived alarm compares against."""
        return frozenset(code for code, p in self.points.items() if p.tracked)


def item_level(levels: tuple[int, ...] | list[int]) -> int:
    """The colour level (0 none .. 4 red) of an item whose points are at `levels`.

    The item is at least as severe as its worst point, and each escalation step of
    `ESCALATION` lifts it one colour above the colour it counts.
    """
    top = max(levels, default=0)
    for colour, count, to in ESCALATION:
        at_least = COLOURS.index(colour) + 1
        if sum(1 for level in levels if level >= at_least) >= count:
            top = max(top, COLOURS.index(to) + 1)
    return top
