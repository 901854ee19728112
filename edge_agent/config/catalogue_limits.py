"""A point's alarm limits against the catalogue's regulatory limits, and its deadband's reach.

A default threshold the catalogue marks `binding: limit` (CO alarm `>=24 ppm`; combustible
gas L1 `>=25`, L2 `>=50 %LEL`; not coal methane's, the working face's values where other
locations lawfully differ) is the laxest setting its standard allows: a site may raise sooner or
clear later, never raise later, clear sooner or leave the limit out. The comparison says which
way is laxer: a raise above a number (`>=`) is laxer with a larger number, a raise below one
(`<=`) with a smaller one, and a clear below a number (a restore such as `<1`: power comes back
below it) with a larger one, since power would come back at a higher concentration.

A deadband moves a clear point away from its setpoint; moved out of the plausible range, the
alarm never clears, and so never raises again for the next event.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from configkit.issues import KeyPath
from edge_agent.config.limits import (
    CATALOGUE_THRESHOLD_NAMES,
    COLOURS,
    THRESHOLD_FAMILIES,
    THRESHOLD_LEVELS,
    colours_rise,
)
from specs.catalogue import RATE_LEVEL, Binding, Edge, Indicator, Op, Threshold

_FALLING = frozenset({"low", "low_low"})
"""Threshold keys that raise on a falling value (colours fall when their thresholds do)."""

_CLEARED_BY = {"power_off": "restore"}
"""A threshold whose alarm clears at another key's value rather than at setpoint - deadband."""


@dataclass(frozen=True, slots=True)
class HalfLine:
    """The values `x` with `x op value`: where a threshold raises, or where it clears."""

    value: float
    op: Op

    @property
    def upward(self) -> bool:
        """Whether the half-line holds the values above `value`."""
        return self.op in (">", ">=")

    @property
    def inclusive(self) -> bool:
        """Whether `value` itself is on the half-line."""
        return self.op in (">=", "<=")

    def holds(self, x: float) -> bool:
        """Whether `x op value`."""
        if x == self.value:
            return self.inclusive
        return x > self.value if self.upward else x < self.value

    def covers(self, other: HalfLine) -> bool:
        """Whether every value of `other`, a half-line the same way, is on this one."""
        if self.value == other.value:
            return self.inclusive or not other.inclusive
        return self.holds(other.value)


_OPS: Mapping[tuple[bool, bool], Op] = {
    (True, True): ">=",
    (True, False): ">",
    (False, True): "<=",
    (False, False): "<",
}
"""The comparison of a half-line by (upward, inclusive)."""


def _half_line(value: float, upward: bool, inclusive: bool) -> HalfLine:
    return HalfLine(value, _OPS[upward, inclusive])


@dataclass(frozen=True, slots=True)
class PointLimits:
    """One point's limits as the alarms will use them: `own` in `unit`, `defaults` canonical."""

    own: Mapping[str, float]
    defaults: Mapping[str, float]
    deadband: float
    unit: str
    indicator: Indicator

    def canonical(self, value: float) -> float:
        """A value of the point's unit in the canonical unit."""
        return self.indicator.to_canonical(value, self.unit)

    def shown(self, canonical: float) -> str:
        """A canonical value as the point writes it: `20000 ppm (2 %CH4)`."""
        canonical_unit = self.indicator.unit
        if self.unit == canonical_unit:
            return f"{canonical:g} {canonical_unit}"
        own = self.indicator.from_canonical(canonical, self.unit)
        return f"{own:g} {self.unit} ({canonical:g} {canonical_unit})"

    def effective(self) -> dict[str, float]:
        """Every setpoint the alarms will use, canonical: the point's own and the defaults."""
        return {**{k: self.canonical(v) for k, v in self.own.items()}, **self.defaults}

    def rising(self, name: str) -> bool:
        """Whether the alarm of threshold `name` raises on a rising value."""
        if name in COLOURS:
            effective = self.effective()
            return colours_rise(effective.get(colour) for colour in COLOURS)
        return name not in _FALLING

    def raise_line(self, name: str, setpoint: float) -> HalfLine:
        """Where threshold `name` at canonical `setpoint` raises, as the catalogue words it.

        A level the catalogue words no comparison for includes its number (`>=`, `<=`).
        """
        op = self.indicator.comparison(THRESHOLD_LEVELS[name])
        if op is not None:
            return HalfLine(setpoint, op)
        return _half_line(setpoint, self.rising(name), inclusive=True)

    def clear_line(self, name: str, setpoint: float) -> HalfLine:
        """Where the alarm of `name` raised at `setpoint` clears by its deadband.

        Back past `setpoint - deadband` (`+` for a falling one), at that point itself iff the
        raise is strict, as the alarms build it.
        """
        raised = self.raise_line(name, setpoint)
        band = self.deadband * self.indicator.units[self.unit].factor
        clear_at = setpoint - band if raised.upward else setpoint + band
        return _half_line(clear_at, not raised.upward, inclusive=not raised.inclusive)


def limit_problems(point: PointLimits) -> Iterator[tuple[KeyPath, str]]:
    """Each catalogue limit the point's own thresholds leave out or set laxer, at its key."""
    own = point.own
    for default in point.indicator.defaults:
        name = CATALOGUE_THRESHOLD_NAMES.get(default.name)
        if default.binding is not Binding.LIMIT or default.level == RATE_LEVEL or name is None:
            continue
        family = next(f for f in THRESHOLD_FAMILIES if name in f)
        if not any(key in own for key in family):
            continue  # the family is the catalogue's own defaults
        limit = HalfLine(default.canonical, default.op)
        if default.edge is Edge.CLEAR:
            yield from _clear_problems(point, name, default, limit)
        elif name not in own:
            yield (
                ("thresholds",),
                (
                    f"{name} is left out of the {'/'.join(family)} keys this point sets, but "
                    f"the catalogue's {_worded(default)} for {point.indicator.code} is a limit "
                    f"({default.source}): set {name} too, {_stricter(point, limit)}, or none of "
                    "them to take the catalogue's defaults"
                ),
            )
        elif not point.raise_line(name, point.canonical(own[name])).covers(limit):
            yield (("thresholds", name), _laxer(point, name, own[name], default, limit))


def _clear_problems(
    point: PointLimits, name: str, default: Threshold, limit: HalfLine
) -> Iterator[tuple[KeyPath, str]]:
    own = point.own
    raised = CATALOGUE_THRESHOLD_NAMES[default.level]
    if name in own:
        if not limit.covers(HalfLine(point.canonical(own[name]), default.op)):
            yield (("thresholds", name), _laxer(point, name, own[name], default, limit))
        return
    if raised not in own:
        return  # nothing of the point's own clears this level
    clears = point.clear_line(raised, point.canonical(own[raised]))
    if not limit.covers(clears):
        yield (
            ("thresholds", raised),
            (
                f"{raised} without {name} clears {clears.op}{point.shown(clears.value)} "
                f"({raised} - deadband), laxer than the catalogue's {_worded(default)} for "
                f"{point.indicator.code}, a limit ({default.source}): set {name} too, "
                f"{_stricter(point, limit, Edge.CLEAR)}"
            ),
        )


def deadband_problems(point: PointLimits) -> Iterator[tuple[KeyPath, str]]:
    """Each alarm the deadband would keep from ever clearing within the plausible range."""
    if point.deadband == 0:
        return
    indicator = point.indicator
    effective = point.effective()
    for name, setpoint in effective.items():
        if name in _CLEARED_BY.values() or _CLEARED_BY.get(name) in effective:
            continue  # cleared at its restore value, not by the deadband
        clears = point.clear_line(name, setpoint)
        edge = indicator.low if not clears.upward else indicator.high
        if not clears.holds(edge):
            yield (
                ("deadband",),
                (
                    f"deadband {point.deadband:g} {point.unit} puts the clear point of {name} "
                    f"({point.shown(setpoint)}) at {clears.op}{point.shown(clears.value)}, "
                    f"which no value in {indicator.code}'s plausible range "
                    f"{indicator.low:g}..{indicator.high:g} {indicator.unit} reaches: the alarm "
                    "would never clear"
                ),
            )
            return


def _worded(default: Threshold) -> str:
    return f"{default.name} {default.op}{default.value:g} {default.unit}"


def _laxer(point: PointLimits, name: str, value: float, default: Threshold, limit: HalfLine) -> str:
    return (
        f"{name} {point.shown(point.canonical(value))} is laxer than the catalogue's limit "
        f"{_worded(default)} for {point.indicator.code} ({default.source}): a site may set it "
        f"stricter, never laxer: {_stricter(point, limit, default.edge)}"
    )


def _stricter(point: PointLimits, limit: HalfLine, edge: Edge = Edge.RAISE) -> str:
    # Stricter raises sooner: lower for a raise above its number; a clear below its number
    # (restore `<1`) is stricter lower too, as power then comes back later.
    lower = limit.upward if edge is Edge.RAISE else not limit.upward
    return f"{'at most' if lower else 'at least'} {point.shown(limit.value)}"
