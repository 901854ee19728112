"""Compile the alarm rules of a site from its resolved points and its `alarms:` list.

Pure: checked config and the indicator catalogue in, `AlarmRules` out. The config layer has
already refused every mistake (unknown points, thresholds outside the vocabulary, unordered
levels), so this module only converts units and lays the rules out by triggering point. The
catalogue is the caller's (the runtime passes the one it loaded), never a process-wide one.
"""

from __future__ import annotations

from collections.abc import Sequence

from configkit.durations import format_duration
from edge_agent.config import (
    RATE_PERIODS,
    CompareAlarm,
    EscalationAlarm,
    OvertimeAlarm,
    SiteAlarm,
    SiteConfig,
)
from edge_agent.config.limits import colours_rise
from edge_agent.core.alarms.rules import (
    COLOURS,
    AlarmRules,
    CompareRule,
    HeldRule,
    ItemRule,
    LevelRule,
    PointRules,
    RateRule,
)
from edge_agent.core.points import ResolvedPoint, resolve_points
from specs.catalogue import RATE_LEVEL, Catalogue, Edge, Indicator, Op

# (Limits field, level, rising), least severe first within each family and direction.
_LEVELS = (
    ("low", "L", False),
    ("low_low", "LL", False),
    ("high", "H", True),
    ("high_high", "HH", True),
    ("level1", "L1", True),
    ("level2", "L2", True),
    ("alarm", "alarm", True),
    ("power_off", "power_off", True),
)


def rules_for_site(config: SiteConfig, catalogue: Catalogue) -> AlarmRules:
    """The alarm rules of a checked site map, units converted with `catalogue`."""
    return compile_rules(resolve_points(config), config.alarms, catalogue)


def compile_rules(
    points: Sequence[ResolvedPoint], alarms: Sequence[SiteAlarm], catalogue: Catalogue
) -> AlarmRules:
    """Lay out every point's own alarms and the site-level ones by triggering point."""
    by_code = {p.point: p for p in points}
    indicators = {p.point: _indicator(p, catalogue) for p in points}
    levels = {p.point: level_rules(p, indicators[p.point]) for p in points}
    rates = {p.point: rate_rules(p, indicators[p.point]) for p in points}
    compares: dict[str, list[CompareRule]] = {}
    held: dict[str, list[HeldRule]] = {}
    items: dict[str, list[ItemRule]] = {}
    tracked: set[str] = set()
    for alarm in alarms:
        if isinstance(alarm, EscalationAlarm):
            item = ItemRule(alarm.item, alarm.points)
            for code in alarm.points:
                items.setdefault(code, []).append(item)
        elif isinstance(alarm, OvertimeAlarm) and alarm.when is not None:
            held.setdefault(alarm.point, []).append(
                _held_rule(alarm, by_code[alarm.point], catalogue)
            )
        else:
            rule = _compare_rule(alarm, by_code[alarm.point], catalogue)
            compares.setdefault(alarm.point, []).append(rule)
            if rule.limit_point is not None:
                tracked.add(rule.limit_point)
    codes = [p.point for p in points]
    table = {
        code: PointRules(
            levels=levels[code],
            rates=rates[code],
            compares=tuple(compares.get(code, ())),
            held=tuple(held.get(code, ())),
            items=tuple(items.get(code, ())),
            tracked=code in tracked,
        )
        for code in codes
    }
    slots = {
        *(r.slot for rules in table.values() for r in rules.levels),
        *(r.slot for rules in table.values() for r in rules.rates),
        *(r.slot for rules in table.values() for r in rules.compares),
        *(r.slot for rules in table.values() for r in rules.held),
        *(item.slot(c) for rules in table.values() for item in rules.items for c in COLOURS),
    }
    return AlarmRules(
        points={code: rules for code, rules in table.items() if rules != PointRules()},
        slots=frozenset(slots),
        site_points=frozenset(codes),
    )


def level_rules(point: ResolvedPoint, indicator: Indicator) -> tuple[LevelRule, ...]:
    """The setpoint alarms of one point: H/HH/L/LL, gas L1/L2, coal, tailings colours.

    Each compares at its setpoint as the catalogue words that level's threshold, whether the
    setpoint is the catalogue's default or the point's own (`inclusive`); a clear point is on
    the other side of that comparison, except a restore limit the catalogue words itself.
    """
    limits, deadband = point.thresholds, point.deadband
    rise = colours_rise(getattr(limits, colour) for colour in COLOURS)
    levels = [*_LEVELS, *((colour, colour, rise) for colour in COLOURS)]
    rules = []
    for name, level, rising in levels:
        setpoint = getattr(limits, name)
        if setpoint is None:
            continue
        inclusive = _inclusive(indicator.comparison(level))
        clear_at = setpoint - deadband if rising else setpoint + deadband
        clear_inclusive = not inclusive
        if name == "power_off" and limits.restore is not None:
            # Coal: power comes back only below the restore limit, compared as worded.
            clear_at = limits.restore
            clear_inclusive = _inclusive(indicator.comparison(level, Edge.CLEAR), not inclusive)
        rules.append(
            LevelRule(
                f"{point.point}/{level}",
                level,
                setpoint,
                clear_at,
                rising,
                inclusive=inclusive,
                clear_inclusive=clear_inclusive,
            )
        )
    return tuple(rules)


def _inclusive(op: Op | None, default: bool = True) -> bool:
    """Whether a comparison includes its limit; `default` where the catalogue words none."""
    return default if op is None else op in (">=", "<=")


def rate_rules(point: ResolvedPoint, indicator: Indicator) -> tuple[RateRule, ...]:
    """The rate-of-change alarms of one point.

    A rate over a window the catalogue gives a default for compares as that default is worded
    (GB 51214: `> 10 mm/d` over 1 d, `>= 5 mm/h` over 1 h), whatever its limit; over another
    window it includes its limit (`>=`).
    """
    return tuple(
        RateRule(
            slot=f"{point.point}/rate.{format_duration(rate.window)}",
            window=rate.window,
            limit=rate.limit,
            clear_at=rate.limit - rate.deadband,
            unit=rate.unit,
            per_second=rate.per_second,
            inclusive=_inclusive(indicator.comparison(RATE_LEVEL, window=rate.window)),
        )
        for rate in point.rates
    )


def _indicator(point: ResolvedPoint, catalogue: Catalogue) -> Indicator:
    indicator = catalogue.get(point.quota)
    if indicator is None:  # the config loader already refused unknown quotas
        raise LookupError(f"quota {point.quota} is not in the catalogue")
    return indicator


def _compare_rule(
    alarm: CompareAlarm | OvertimeAlarm, point: ResolvedPoint, catalogue: Catalogue
) -> CompareRule:
    slot = f"{point.point}/{alarm.kind}"
    if isinstance(alarm, OvertimeAlarm):
        # A duration point: the limit in seconds becomes the point's canonical time unit.
        limit = alarm.limit / RATE_PERIODS[point.canonical_unit]
        return CompareRule(slot, alarm.kind, point.canonical_unit, point.deadband, limit=limit)
    fixed = None
    if alarm.limit is not None:
        fixed = _indicator(point, catalogue).to_canonical(alarm.limit, point.unit)
    return CompareRule(
        slot,
        alarm.kind,
        point.canonical_unit,
        point.deadband,
        limit=fixed,
        limit_point=alarm.limit_point,
    )


def _held_rule(alarm: OvertimeAlarm, point: ResolvedPoint, catalogue: Catalogue) -> HeldRule:
    when = alarm.when
    if when is None:  # the caller routes only conditions here; kept for type narrowing
        raise ValueError("a held-condition alarm needs `when`")
    indicator = _indicator(point, catalogue)

    def canonical(value: float | None) -> float | None:
        return None if value is None else indicator.to_canonical(value, point.unit)

    return HeldRule(
        slot=f"{point.point}/{alarm.kind}",
        level=alarm.kind,
        limit=alarm.limit,
        above=canonical(when.above),
        below=canonical(when.below),
    )
