"""Properties of alarm evaluation that hold for any readings (hypothesis).

Most rules here are built directly, without the catalogue, so the properties test the
evaluator alone: no flapping inside the deadband, raises and clears pair up by alarm_id,
escalation never skips a colour, BAD readings change nothing, state survives a restart.
The last ones compile every threshold of the shipped catalogue from a site map: at its exact
value an alarm raises iff the catalogue's comparison includes it (`>=`, `<=`), whether the
value is the catalogue's default or the site's own.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from configkit.durations import format_duration
from edge_agent.config import THRESHOLD_LEVELS
from edge_agent.core.alarms import (
    COLOURS,
    WINDOW_SAMPLES,
    AlarmRules,
    AlarmState,
    CompareRule,
    HeldRule,
    ItemRule,
    LevelRule,
    PointRules,
    RateRule,
    decode_state,
    encode_state,
    evaluate,
    item_level,
)
from specs.catalogue import (
    RATE_LEVEL,
    Catalogue,
    Direction,
    Edge,
    Indicator,
    Threshold,
    default_catalogue,
)
from specs.records import AlarmEvent, AlarmRecord, Quality, Reading, iso_time
from tests.support.alarm_sites import site_rules
from tests.support.catalogues import unbound_catalogue

T0 = 1.7e9
ITEM_POINTS = tuple(f"D{i}" for i in range(1, 7))


def _rules(table: dict[str, PointRules]) -> AlarmRules:
    slots = {
        *(r.slot for p in table.values() for r in p.levels),
        *(r.slot for p in table.values() for r in p.rates),
        *(r.slot for p in table.values() for r in p.compares),
        *(r.slot for p in table.values() for r in p.held),
        *(i.slot(c) for p in table.values() for i in p.items for c in COLOURS),
    }
    return AlarmRules(table, frozenset(slots), frozenset(table))


def _colours(point: str, item: ItemRule) -> PointRules:
    levels = tuple(
        LevelRule(f"{point}/{c}", c, 10.0 * k, 10.0 * k - 1.0, rising=True)
        for k, c in enumerate(COLOURS, start=1)
    )
    return PointRules(levels=levels, items=(item,))


ITEM = ItemRule("dam", ITEM_POINTS)
SITE = _rules(
    {
        "P": PointRules(
            levels=(
                LevelRule("P/L", "L", 20.0, 22.0, rising=False),
                LevelRule("P/LL", "LL", 10.0, 12.0, rising=False),
                LevelRule("P/H", "H", 80.0, 78.0, rising=True),
                LevelRule("P/HH", "HH", 90.0, 88.0, rising=True),
            ),
            rates=(RateRule("P/rate.1h", 3600.0, 30.0, 25.0, "u/h", 3600.0),),
            tracked=True,
        ),
        "Q": PointRules(
            compares=(CompareRule("Q/over_staff", "over_staff", "u", 1.0, limit_point="P"),),
            held=(HeldRule("Q/overtime", "overtime", 7200.0, above=50.0),),
        ),
        "M": PointRules(
            levels=(
                LevelRule("M/alarm", "alarm", 1.0, 0.95, rising=True),
                LevelRule("M/power_off", "power_off", 1.5, 1.0, rising=True),
            )
        ),
        **{point: _colours(point, ITEM) for point in ITEM_POINTS},
    }
)

Step = tuple[str, float | None, float]  # point, value (None: BAD), seconds since the last one

steps = st.lists(
    st.tuples(
        st.sampled_from(["P", "Q", "M", *ITEM_POINTS]),
        st.one_of(st.none(), st.floats(-10, 110, allow_nan=False), st.sampled_from([1.0, 1.5])),
        # Mostly forward, now and then a wall-clock step back.
        st.one_of(st.floats(1, 4000), st.floats(-600, 0)),
    ),
    max_size=80,
)


def _replay(
    rules: AlarmRules, state: AlarmState, sequence: Sequence[Step], start: float = T0
) -> tuple[list[tuple[Reading, tuple[AlarmRecord, ...]]], AlarmState, float]:
    out = []
    t = start
    for point, value, dt in sequence:
        t += dt
        quality = Quality.BAD if value is None else Quality.GOOD
        reading = Reading(point, "Q-X", iso_time(t), value, "u", quality)
        events, state = evaluate(rules, state, reading)
        out.append((reading, events))
    return out, state, t


@given(
    high=st.floats(-1000, 1000),
    deadband=st.floats(0.001, 100),
    spread=st.floats(0, 100),
    shares=st.lists(st.floats(0, 1), max_size=60),
)
def test_no_flapping_inside_the_deadband(
    high: float, deadband: float, spread: float, shares: list[float]
) -> None:
    rules = _rules(
        {"P": PointRules(levels=(LevelRule("P/H", "H", high, high - deadband, rising=True),))}
    )
    events, state = evaluate(
        rules, AlarmState("ns"), Reading("P", "Q", iso_time(T0), high, "u", Quality.GOOD)
    )
    assert [e.event for e in events] == [AlarmEvent.RAISE]
    low = high - deadband
    for i, share in enumerate(shares, start=1):
        value = low + share * (deadband + spread)  # anywhere from the clear point upward
        reading = Reading("P", "Q", iso_time(T0 + i), value, "u", Quality.GOOD)
        events, state = evaluate(rules, state, reading)
        assert events == (), f"{value} in [{low}, {high + spread}] flapped"


@given(shares=st.lists(st.floats(0, 1), max_size=60))
def test_no_flapping_between_restore_and_power_off(shares: list[float]) -> None:
    rules = _rules({"M": SITE.points["M"]})
    events, state = evaluate(
        rules, AlarmState("ns"), Reading("M", "Q", iso_time(T0), 1.6, "u", Quality.GOOD)
    )
    assert [e.level for e in events] == ["alarm", "power_off"]
    for i, share in enumerate(shares, start=1):
        value = 1.0 + share * 0.49  # between restore (1.0) and power-off (1.5)
        events, state = evaluate(
            rules, state, Reading("M", "Q", iso_time(T0 + i), value, "u", Quality.GOOD)
        )
        assert all(e.level != "power_off" for e in events)


# A slope point's random walk, read every few minutes: exercises the rate window.
walks = st.lists(
    st.tuples(st.one_of(st.none(), st.floats(-20, 20)), st.floats(1, 900)), max_size=120
).map(
    lambda moves: [
        ("P", None if move is None else 50 + sum(m or 0 for m, _ in moves[: i + 1]), dt)
        for i, (move, dt) in enumerate(moves)
    ]
)


@given(st.one_of(steps, walks))
def test_every_raise_is_active_or_cleared_once_with_its_id(sequence: list[Step]) -> None:
    replayed, state, _ = _replay(SITE, AlarmState("ns"), sequence)
    history: dict[str, list[AlarmEvent]] = {}
    active_slot: dict[str, str] = {}
    for reading, events in replayed:
        for event in events:
            assert (event.point, event.trigger_t, event.t) == (reading.point, reading.t, reading.t)
            history.setdefault(event.alarm_id, []).append(event.event)
            slot = event.alarm_id.rpartition("/")[0]
            if event.event is AlarmEvent.RAISE:
                assert slot not in active_slot, f"{slot} raised twice without a clear"
                active_slot[slot] = event.alarm_id
            else:
                assert active_slot.pop(slot) == event.alarm_id, "a clear ends its own raise"
    for alarm_id, seen in history.items():
        assert seen in ([AlarmEvent.RAISE], [AlarmEvent.RAISE, AlarmEvent.CLEAR]), alarm_id
    still_active = {a for a, seen in history.items() if seen == [AlarmEvent.RAISE]}
    assert {a.alarm_id for a in state.active.values()} == still_active
    assert state.serial == len(history)


@given(steps)
def test_escalation_never_skips_a_colour(sequence: list[Step]) -> None:
    state = AlarmState("ns")
    t = T0
    for point, value, dt in sequence:
        t += dt
        quality = Quality.BAD if value is None else Quality.GOOD
        before = _item_colours(state)
        events, state = evaluate(SITE, state, Reading(point, "Q", iso_time(t), value, "u", quality))
        after = _item_colours(state)
        # The item's active colours are always blue .. its colour, with nothing missing.
        assert after == set(range(1, len(after) + 1))
        worst = max((_point_colour(state, p) for p in ITEM_POINTS), default=0)
        assert len(after) == item_level([_point_colour(state, p) for p in ITEM_POINTS])
        assert len(after) <= worst + 1
        # And events walk there one colour at a time.
        on = set(before)
        for event in events:
            if not event.alarm_id.startswith("item:"):
                continue
            level = COLOURS.index(event.level) + 1
            if event.event is AlarmEvent.RAISE:
                assert level == 1 or level - 1 in on
                on.add(level)
            else:
                assert level + 1 not in on
                on.discard(level)
        assert on == after


def _item_colours(state: AlarmState) -> set[int]:
    return {k for k, c in enumerate(COLOURS, start=1) if ITEM.slot(c) in state.active}


def _point_colour(state: AlarmState, point: str) -> int:
    return max(
        (k for k, c in enumerate(COLOURS, start=1) if f"{point}/{c}" in state.active), default=0
    )


@given(st.lists(st.integers(0, 4), max_size=12), st.integers(0, 11), st.integers(0, 4))
def test_item_level_is_monotone_and_one_step_above_the_worst_point(
    levels: list[int], index: int, higher: int
) -> None:
    level = item_level(levels)
    assert max(levels, default=0) <= level <= max(levels, default=0) + 1
    if levels:
        raised = list(levels)
        raised[index % len(levels)] = max(raised[index % len(levels)], higher)
        assert item_level(raised) >= level


@given(steps, st.sampled_from(["P", "Q", "M", *ITEM_POINTS]), st.floats(-10, 110))
def test_bad_readings_never_raise_or_clear(sequence: list[Step], point: str, value: float) -> None:
    _, state, t = _replay(SITE, AlarmState("ns"), sequence)
    events, after = evaluate(
        SITE, state, Reading(point, "Q", iso_time(t + 1), value, "u", Quality.BAD)
    )
    assert events == ()
    assert after.active == state.active
    assert after.serial == state.serial


@settings(max_examples=50)
@given(st.one_of(steps, walks), st.integers(0, 120))
def test_a_restart_from_the_stored_state_changes_nothing(sequence: list[Step], cut: int) -> None:
    whole, end_state, _ = _replay(SITE, AlarmState("ns"), sequence)
    first, middle, t = _replay(SITE, AlarmState("ns"), sequence[:cut])
    restored = decode_state(encode_state(middle))
    assert restored == middle
    second, resumed, _ = _replay(SITE, restored, sequence[cut:], start=t)
    assert [e for _, e in first + second] == [e for _, e in whole]
    assert resumed == end_state


@given(walks, st.floats(1, 60))
def test_rate_windows_stay_bounded(sequence: list[Step], dt: float) -> None:
    dense = [("P", value, dt) for _, value, _ in sequence * 5]
    _, state, _ = _replay(SITE, AlarmState("ns"), dense)
    assert all(len(window) <= WINDOW_SAMPLES + 1 for window in state.windows.values())


# --- every catalogue threshold, at its exact value -------------------------------------------

CATALOGUE = default_catalogue()
DEFAULTS = [(i, t) for i in CATALOGUE.in_domain(None) for t in i.defaults]
LEVEL_RAISES = [(i, t) for i, t in DEFAULTS if t.edge is Edge.RAISE and t.level != RATE_LEVEL]
RATE_RAISES = [(i, t) for i, t in DEFAULTS if t.edge is Edge.RAISE and t.level == RATE_LEVEL]
SITE_KEY = {level: key for key, level in THRESHOLD_LEVELS.items() if key != "restore"}
INCLUSIVE = frozenset({">=", "<="})


def _catalogue_site(
    indicator: Indicator, point: str, catalogue: Catalogue | None = None
) -> AlarmRules:
    # A generic indicator (GAS) goes on a site of any domain.
    domain = indicator.domain if CATALOGUE.domains[indicator.domain].site else "WHP"
    return site_rules(domain, [f"point: P1, quota: {indicator.code}{point}"], catalogue=catalogue)


def _at(
    rules: AlarmRules, indicator: Indicator, moves: Sequence[tuple[float, float]]
) -> list[list[tuple[AlarmEvent, str]]]:
    """(seconds after T0, canonical value) readings from a fresh state: events per reading."""
    state, found = AlarmState("ns"), []
    for at, value in moves:
        reading = Reading(
            "P1", indicator.code, iso_time(T0 + at), value, indicator.unit, Quality.GOOD
        )
        events, state = evaluate(rules, state, reading)
        found.append([(e.event, e.alarm_id.split("/")[1]) for e in events])
    return found


def _eighths(indicator: Indicator) -> st.SearchStrategy[float]:
    """Values inside the indicator's range that YAML and the unit conversion keep exact."""
    low, high = math.ceil(indicator.low * 8), math.floor(indicator.high * 8)
    return st.integers(max(low, -8000), min(high, 8000)).map(lambda k: k / 8)


@given(st.sampled_from(LEVEL_RAISES), st.data())
def test_at_a_catalogue_threshold_a_level_raises_iff_its_comparison_includes_it(
    case: tuple[Indicator, Threshold], data: st.DataObject
) -> None:
    indicator, threshold = case
    level, inclusive = threshold.level, threshold.op in INCLUSIVE
    outward = math.inf if CATALOGUE.alarm_levels[level].direction is Direction.ABOVE else -math.inf
    restore = next(
        (t for t in indicator.defaults if t.edge is Edge.CLEAR and t.level == level), None
    )
    limit, clear_at, clears_at_it = threshold.canonical, threshold.canonical, not inclusive
    own = data.draw(st.booleans(), "the site's own value")
    deadband = data.draw(st.integers(0, 16), "deadband") / 8
    if own:  # the site's value for the same threshold compares the same way
        limit = data.draw(_eighths(indicator), "own limit")
        clear_at = limit - deadband if outward > 0 else limit + deadband
        point = f", thresholds: {{{SITE_KEY[level]}: {limit!r}}}, deadband: {deadband!r}"
    elif restore is not None:  # coal power-off: back on only past the restore limit
        clear_at, clears_at_it, point = restore.canonical, restore.op in INCLUSIVE, ""
    else:
        clear_at = limit - deadband if outward > 0 else limit + deadband
        point = f", deadband: {deadband!r}"
    # A clear point no plausible value gets past is refused by the config (the alarm would
    # never clear); a site's own number may be laxer than a catalogue limit in a copy that
    # binds none, as the comparison is what this checks.
    assume(indicator.plausible(clear_at))
    assume(clears_at_it or clear_at != (indicator.low if outward > 0 else indicator.high))
    rules = _catalogue_site(indicator, point, unbound_catalogue() if own else None)
    beyond, inside = math.nextafter(limit, outward), math.nextafter(clear_at, -outward)

    def found(value: float) -> bool:
        return (AlarmEvent.RAISE, level) in _at(rules, indicator, [(0, value)])[0]

    assert found(limit) is inclusive, f"{indicator.code} {threshold.op} {limit:g}"
    assert found(beyond)
    # Raised, it clears at its clear point iff the clear comparison includes that point; the
    # clear point is then no longer in alarm (deadband 0: the limit itself).
    after = _at(rules, indicator, [(0, beyond), (1, clear_at), (2, inside)])
    assert ((AlarmEvent.CLEAR, level) in after[1]) is clears_at_it
    assert ((AlarmEvent.CLEAR, level) in after[1] + after[2]) is True


@given(st.sampled_from(RATE_RAISES), st.data())
def test_at_a_catalogue_rate_the_alarm_raises_iff_its_comparison_includes_it(
    case: tuple[Indicator, Threshold], data: st.DataObject
) -> None:
    indicator, threshold = case
    inclusive, window = threshold.op in INCLUSIVE, threshold.window
    assert window is not None
    limit = threshold.value
    if data.draw(st.booleans(), "the site's own limit"):  # same window: same comparison
        limit = data.draw(st.integers(1, 800), "own limit") / 8
        point = f", rate: {{window: {window!r}, limit: {limit!r}, unit: {threshold.unit}}}"
    else:
        point = ""
    rules = _catalogue_site(indicator, point)
    slot = f"rate.{format_duration(window)}"
    (rule,) = (r for r in rules.points["P1"].rates if r.slot == f"P1/{slot}")
    change = limit * window / rule.per_second  # the change over one window at exactly `limit`
    assume(change * rule.per_second / window == limit and 4 * change - 3 * change == change)
    at_limit = _at(rules, indicator, [(0, 0.0), (window, change)])
    assert ((AlarmEvent.RAISE, slot) in at_limit[1]) is inclusive, f"{threshold.op} {limit:g}"
    above = _at(rules, indicator, [(0, 0.0), (window, math.nextafter(change, math.inf))])
    assert (AlarmEvent.RAISE, slot) in above[1]
    # Raised at three times the limit, it clears at exactly the limit iff that is not in alarm.
    moves = [(0, 0.0), (window, 3 * change), (2 * window, 4 * change)]
    after = _at(rules, indicator, moves)
    assert (AlarmEvent.RAISE, slot) in after[1]
    assert ((AlarmEvent.CLEAR, slot) in after[2]) is not inclusive
