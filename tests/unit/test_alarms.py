"""Edge alarms against the standards' numbers: site map YAML in, raise/clear events out.

Each table feeds a point's readings through the rules compiled from a real site map and lists
the events expected after each reading, as (event, level) pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from edge_agent.core.alarms import (
    AlarmRules,
    AlarmState,
    evaluate,
    evaluate_batch,
)
from edge_agent.core.alarms.build import compile_rules
from edge_agent.core.points import resolve_points
from specs.catalogue import default_catalogue
from specs.records import AlarmEvent, AlarmRecord, Quality, Reading, iso_time
from tests.support.alarm_sites import one_device_site, site_rules

T0 = 1.7e9
RAISE, CLEAR = AlarmEvent.RAISE, AlarmEvent.CLEAR


_UNITS = {"WHP": "m", "MK": "%CH4", "BP": "mm", "WKK": "mm", "YHBZ": "persons", "GAS": "%VOL"}


def reading(
    point: str, quota: str, at: float, value: float | None, quality: Quality = Quality.GOOD
) -> Reading:
    unit = _UNITS[quota.split("-", maxsplit=1)[0]]
    return Reading(point, quota, iso_time(T0 + at), value, unit, quality)


def run(
    rules: AlarmRules,
    point: str,
    quota: str,
    values: Sequence[float | None],
    *,
    step: float = 1.0,
    state: AlarmState | None = None,
) -> tuple[list[list[tuple[AlarmEvent, str]]], list[AlarmRecord], AlarmState]:
    """Evaluate readings `step` seconds apart; return events per reading, all events, state."""
    state = state or AlarmState("ns")
    per_reading: list[list[tuple[AlarmEvent, str]]] = []
    every: list[AlarmRecord] = []
    for index, value in enumerate(values):
        quality = Quality.BAD if value is None else Quality.GOOD
        events, state = evaluate(rules, state, reading(point, quota, index * step, value, quality))
        per_reading.append([(e.event, e.level) for e in events])
        every.extend(events)
    return per_reading, every, state


# --- GB/T 50493-2019: combustible gas level 1 <= 25 %LEL, level 2 <= 50 %LEL ----------------

GAS_TABLE = [
    (10.0, []),
    (24.9, []),
    (25.0, [(RAISE, "L1")]),  # raise at >= the level
    (49.9, []),
    (50.0, [(RAISE, "L2")]),
    (49.0, []),  # 49 is not below 50 - 1 (deadband): L2 holds
    (48.9, [(CLEAR, "L2")]),
    (24.5, []),
    (23.9, [(CLEAR, "L1")]),
    (60.0, [(RAISE, "L1"), (RAISE, "L2")]),  # least severe first
    (5.0, [(CLEAR, "L2"), (CLEAR, "L1")]),  # most severe first
]


def test_gas_levels_default_to_gb_t_50493() -> None:
    rules = site_rules("WHP", ["point: G1, quota: WHP-LEL, deadband: 1.0"])
    per_reading, events, _ = run(rules, "G1", "WHP-LEL", [v for v, _ in GAS_TABLE])
    assert per_reading == [expected for _, expected in GAS_TABLE]
    assert [(e.level, e.threshold) for e in events[:2]] == [("L1", 25.0), ("L2", 50.0)]
    # A clear states the clear point it crossed: the level minus the deadband.
    assert [(e.level, e.threshold) for e in events[2:4]] == [("L2", 49.0), ("L1", 24.0)]


def test_gas_levels_of_the_point_replace_the_defaults() -> None:
    rules = site_rules("WHP", ["point: G1, quota: WHP-LEL, thresholds: {level1: 20, level2: 40}"])
    per_reading, _, _ = run(rules, "G1", "WHP-LEL", [19.9, 20.0, 39.9, 40.0])
    assert per_reading == [[], [(RAISE, "L1")], [], [(RAISE, "L2")]]


# --- coal methane: alarm, power-off and restore (煤矿安全规程 / AQ 1029; AQMC rows) -----------

COAL_CASES = {
    # Working face: alarm >= 1.0, power-off >= 1.5, power back below 1.0.
    "working face": (
        "alarm: 1.0, power_off: 1.5, restore: 1.0",
        [
            (0.8, []),
            (1.0, [(RAISE, "alarm")]),
            (1.49, []),
            (1.5, [(RAISE, "power_off")]),
            (1.2, []),  # below power-off but above restore: power stays off
            (1.0, []),  # restore means strictly below
            (0.99, [(CLEAR, "power_off")]),
            (0.96, []),  # alarm clears below 1.0 - 0.05 (deadband)
            (0.94, [(CLEAR, "alarm")]),
        ],
    ),
    # Return air (AQMC row): alarm 0.75, power-off 1.00, restore 0.90.
    "return air": (
        "alarm: 0.75, power_off: 1.0, restore: 0.9",
        [
            (0.75, [(RAISE, "alarm")]),
            (1.0, [(RAISE, "power_off")]),
            (0.95, []),
            (0.89, [(CLEAR, "power_off")]),
            (0.5, [(CLEAR, "alarm")]),
        ],
    ),
    # Above the coal bunker (AQMC row): alarm and power-off 1.50, restore 1.49. Laxer than the
    # working face's, whose values the catalogue gives MK-M0101 as references, not limits.
    "coal bunker": (
        "alarm: 1.5, power_off: 1.5, restore: 1.49",
        [
            (1.5, [(RAISE, "alarm"), (RAISE, "power_off")]),
            (1.49, []),
            (1.48, [(CLEAR, "power_off")]),
            (1.44, [(CLEAR, "alarm")]),
        ],
    ),
}


@pytest.mark.parametrize("case", COAL_CASES)
def test_coal_methane_alarm_power_off_restore(case: str) -> None:
    thresholds, table = COAL_CASES[case]
    rules = site_rules(
        "MK", [f"point: M1, quota: MK-M0101, thresholds: {{{thresholds}}}, deadband: 0.05"]
    )
    per_reading, events, _ = run(rules, "M1", "MK-M0101", [v for v, _ in table])
    assert per_reading == [expected for _, expected in table]
    power_off_clear = next(e for e in events if e.level == "power_off" and e.event is CLEAR)
    assert power_off_clear.threshold == float(thresholds.rsplit(": ", 1)[1])  # the restore limit


def test_coal_methane_defaults_from_the_catalogue() -> None:
    (point,) = resolve_points(one_device_site("MK", ["point: M1, quota: MK-M0101"]))
    limits = point.thresholds
    assert (limits.alarm, limits.power_off, limits.restore) == (1.0, 1.5, 1.0)


# --- GB 51214-2017 §12.3.3: slope displacement 10 mm/d, 5 mm/h -------------------------------


def test_slope_rate_mm_per_hour() -> None:
    rules = site_rules(
        "BP", ["point: S1, quota: BP-GX, rate: {window: 1h, limit: 5, unit: mm/h, deadband: 1}"]
    )
    # Every 5 minutes: 0.3 mm (3.6 mm/h) for two hours, then 0.6 mm (7.2 mm/h), then still.
    steps = [0.3] * 24 + [0.6] * 12 + [0.0] * 12
    values = [sum(steps[:i]) for i in range(len(steps) + 1)]
    per_reading, events, _ = run(rules, "S1", "BP-GX", values, step=300)
    raised = [i for i, found in enumerate(per_reading) if found == [(RAISE, "rate")]]
    cleared = [i for i, found in enumerate(per_reading) if found == [(CLEAR, "rate")]]
    # The last hour holds 12 steps: with 5 fast ones it moved 3.6 + 5 * 0.3 = 5.1 mm >= 5.
    # Once still, it drops 0.6 mm per reading: after 6 still steps 3.6 mm/h < 5 - 1.
    assert (raised, cleared) == ([24 + 5], [36 + 6])
    assert events[0].value == pytest.approx(5.1)
    assert (events[0].threshold, events[0].unit, events[0].detail) == (
        5.0,
        "mm/h",
        "change over 1h",
    )
    assert events[1].value == pytest.approx(3.6)
    assert events[1].threshold == 4.0


def test_slope_rate_mm_per_day_needs_half_a_window_and_takes_either_direction() -> None:
    rules = site_rules("BP", ["point: S1, quota: BP-GZ, rate: {window: 1d, limit: 10, unit: mm/d}"])
    slow = [-0.4 * i for i in range(30)]  # settlement at 9.6 mm/d: no alarm
    per_reading, _, _ = run(rules, "S1", "BP-GZ", slow, step=3600)
    assert not any(per_reading)
    fast = [-0.45 * i for i in range(30)]  # 10.8 mm/d, judged once 12 h are covered
    per_reading, events, _ = run(rules, "S1", "BP-GZ", fast, step=3600)
    assert [i for i, found in enumerate(per_reading) if found] == [12]
    assert events[0].value == pytest.approx(10.8)
    assert events[0].detail == "change over 12h"


# The standards' own words at their numbers: "> 10 mm/d" and "> 50 mm" do not raise at the
# number, ">= 5 mm/h" does; oxygen alarms below 19.5 % and above 23.5 %, not at them.
BOUNDARIES = [
    ("BP", "BP-GX", [0.0, 10.0], 86400, []),  # exactly 10 mm/d
    ("BP", "BP-GX", [0.0, 10.25], 86400, [(RAISE, "rate")]),
    ("BP", "BP-GX", [0.0, 5.0], 3600, [(RAISE, "rate")]),  # exactly 5 mm/h
    ("BP", "BP-CW", [0.0, 50.0], 1, []),
    ("BP", "BP-CW", [0.0, 50.5], 1, [(RAISE, "H")]),
    ("WHP", "GAS-O2", [20.9, 19.5], 1, []),
    ("WHP", "GAS-O2", [20.9, 19.4], 1, [(RAISE, "L")]),
    ("WHP", "GAS-O2", [20.9, 23.5], 1, []),
    ("WHP", "GAS-O2", [20.9, 23.6], 1, [(RAISE, "H")]),
    ("MK", "MK-M0101", [0.5, 1.0], 1, [(RAISE, "alarm")]),  # ">= 1.0 %CH4"
    ("MK", "MK-M0104", [0.0, 24.0], 1, [(RAISE, "alarm")]),  # CO alarm 24 ppm
]


@pytest.mark.parametrize(("domain", "quota", "values", "step", "expected"), BOUNDARIES)
def test_catalogue_thresholds_compare_as_the_standard_words_them(
    domain: str, quota: str, values: list[float], step: float, expected: list[object]
) -> None:
    rules = site_rules(domain, [f"point: P1, quota: {quota}"])
    per_reading, _, _ = run(rules, "P1", quota, values, step=step)
    assert per_reading == [[], expected]


def test_a_sites_own_value_takes_the_catalogues_comparison() -> None:
    # The site sets the number; the comparison stays the standard's for that threshold.
    oxygen = site_rules("WHP", ["point: P1, quota: GAS-O2, thresholds: {low: 18}"])
    assert run(oxygen, "P1", "GAS-O2", [20.9, 18.0, 17.9])[0] == [[], [], [(RAISE, "L")]]
    dump = site_rules("BP", ["point: P1, quota: BP-GX, rate: {window: 1d, limit: 25, unit: cm/d}"])
    per_reading, _, _ = run(dump, "P1", "BP-GX", [0.0, 250.0, 500.5], step=86400)
    assert per_reading == [[], [], [(RAISE, "rate")]]  # > 25 cm/d, as the 1d default


def test_slope_rate_defaults_from_the_catalogue() -> None:
    (point,) = resolve_points(one_device_site("BP", ["point: S1, quota: BP-GX"]))
    assert sorted((r.window, r.limit, r.unit) for r in point.rates) == [
        (3600.0, 5.0, "mm/h"),
        (86400.0, 10.0, "mm/d"),
    ]


# --- tailings: colours per point, escalation per monitoring item -----------------------------

COLOURED = "quota: WKK-DX, thresholds: {blue: 10, yellow: 20, orange: 30, red: 40}"
ITEM = [f"point: D{i}, {COLOURED}" for i in range(1, 7)]
ESCALATE = ["kind: escalation, item: dam-surface, points: [D1, D2, D3, D4, D5, D6]"]


def _item_events(rules: AlarmRules, moves: Sequence[tuple[int, float]]) -> list[list[str]]:
    """Move points one at a time; return the item's raised/cleared colours after each move."""
    state = AlarmState("ns")
    found = []
    for at, (number, value) in enumerate(moves):
        events, state = evaluate(rules, state, reading(f"D{number}", "WKK-DX", at, value))
        found.append(
            [f"{e.event}:{e.level}" for e in events if e.alarm_id.startswith("item:dam-surface/")]
        )
    return found


def test_four_blue_points_make_the_item_yellow() -> None:
    rules = site_rules("WKK", ITEM, ESCALATE)
    found = _item_events(rules, [(1, 12), (2, 12), (3, 12), (4, 12), (5, 12), (4, 5)])
    assert found == [
        ["raise:blue"],
        [],
        [],
        ["raise:yellow"],  # the 4th blue point: one colour up, never orange
        [],
        [],  # back to 4 of 6 at blue: still yellow
    ]
    assert _item_events(rules, [(1, 12), (2, 12), (3, 12)])[-1] == []  # 3 blue: item blue only


def test_three_yellow_points_make_the_item_orange() -> None:
    rules = site_rules("WKK", ITEM, ESCALATE)
    found = _item_events(rules, [(1, 22), (2, 22), (3, 22), (3, 5)])
    assert found == [
        ["raise:blue", "raise:yellow"],  # the item is at least as severe as its worst point
        [],
        ["raise:orange"],
        ["clear:orange"],
    ]


def test_two_orange_points_make_the_item_red() -> None:
    rules = site_rules("WKK", ITEM, ESCALATE)
    found = _item_events(rules, [(1, 35), (2, 35), (1, 0), (2, 0)])
    assert found == [
        ["raise:blue", "raise:yellow", "raise:orange"],
        ["raise:red"],
        ["clear:red"],
        ["clear:orange", "clear:yellow", "clear:blue"],
    ]


def test_item_events_name_the_point_and_the_count_that_decided() -> None:
    rules = site_rules("WKK", ITEM, ESCALATE)
    state = AlarmState("ns")
    events: tuple[AlarmRecord, ...] = ()
    for number in range(1, 5):
        events, state = evaluate(rules, state, reading(f"D{number}", "WKK-DX", number, 15))
    (yellow,) = (e for e in events if e.alarm_id.startswith("item:"))
    assert (yellow.point, yellow.trigger_t, yellow.level) == ("D4", iso_time(T0 + 4), "yellow")
    assert (yellow.value, yellow.threshold, yellow.unit) == (4.0, 4.0, "points")
    assert (
        yellow.detail
        == "item dam-surface: 4 at blue+, 0 at yellow+, 0 at orange+, 0 at red+ of 6 points"
    )


def test_falling_colours_alarm_as_the_value_drops() -> None:
    # Dry beach length: a shorter beach is worse, so the colours descend.
    rules = site_rules(
        "WKK",
        ["point: B1, quota: WKK-BL, thresholds: {blue: 80, yellow: 60, orange: 40}, deadband: 2"],
    )
    per_reading, _, _ = run(rules, "B1", "WKK-BL", [100, 80, 59, 61, 63, 30])
    assert per_reading == [
        [],
        [(RAISE, "blue")],
        [(RAISE, "yellow")],
        [],
        [(CLEAR, "yellow")],
        [(RAISE, "yellow"), (RAISE, "orange")],
    ]


# --- fireworks: 超员, 超量, 超时 -----------------------------------------------------------------


def test_over_staff_compares_headcount_with_rated_staffing() -> None:
    rules = site_rules(
        "YHBZ",
        ["point: PC1, quota: YHBZ-PC", "point: PR1, quota: YHBZ-PR"],
        ["kind: over_staff, point: PC1, limit_point: PR1"],
    )
    state = AlarmState("ns")
    steps: list[tuple[str, str, float | None]] = [
        ("PC1", "YHBZ-PC", 12),  # no rated staffing known yet: hold
        ("PR1", "YHBZ-PR", 10),
        ("PC1", "YHBZ-PC", 10),  # at the rated staffing: fine
        ("PC1", "YHBZ-PC", 11),  # 超员
        ("PR1", "YHBZ-PR", None),  # the rated staffing goes BAD: hold
        ("PC1", "YHBZ-PC", 9),
        ("PR1", "YHBZ-PR", 12),
        ("PC1", "YHBZ-PC", 11),
    ]
    found = []
    for at, (point, quota, value) in enumerate(steps):
        quality = Quality.BAD if value is None else Quality.GOOD
        events, state = evaluate(rules, state, reading(point, quota, at, value, quality))
        found.append([(e.event, e.level, e.value, e.threshold, e.related) for e in events])
    assert found == [
        [],
        [],
        [],
        [(RAISE, "over_staff", 11.0, 10.0, "PR1")],
        [],
        [],
        [],
        [(CLEAR, "over_staff", 11.0, 12.0, "PR1")],
    ]


def test_over_quantity_against_approved_quantity_and_over_staff_against_a_fixed_limit() -> None:
    rules = site_rules(
        "YHBZ",
        [
            "point: QT1, quota: YHBZ-QT",
            "point: QR1, quota: YHBZ-QR",
            "point: PC1, quota: YHBZ-PC",
        ],
        [
            "kind: over_quantity, point: QT1, limit_point: QR1",
            "kind: over_staff, point: PC1, limit: 6",
        ],
    )
    state = AlarmState("ns")
    _, state = evaluate(rules, state, reading("QR1", "YHBZ-QR", 0, 50.0))
    events, state = evaluate(rules, state, reading("QT1", "YHBZ-QT", 1, 50.5))
    assert [(e.event, e.level, e.threshold) for e in events] == [(RAISE, "over_quantity", 50.0)]
    events, state = evaluate(rules, state, reading("PC1", "YHBZ-PC", 2, 6))
    assert events == ()
    events, state = evaluate(rules, state, reading("PC1", "YHBZ-PC", 3, 7))
    assert [(e.event, e.level, e.threshold, e.related) for e in events] == [
        (RAISE, "over_staff", 6.0, None)
    ]


def test_overtime_of_a_duration_point() -> None:
    rules = site_rules(
        "YHBZ",
        ["point: W1, quota: YHBZ-DUR"],  # minutes
        ["kind: overtime, point: W1, limit: 8h"],
    )
    per_reading, events, _ = run(rules, "W1", "YHBZ-DUR", [470, 480, 481, 300])
    assert per_reading == [[], [], [(RAISE, "overtime")], [(CLEAR, "overtime")]]
    assert (events[0].value, events[0].threshold, events[0].unit) == (481.0, 480.0, "min")


def test_overtime_of_a_condition_held_too_long() -> None:
    rules = site_rules(
        "YHBZ",
        ["point: PC1, quota: YHBZ-PC"],
        ["kind: overtime, point: PC1, limit: 8h, when: {above: 0}"],
    )
    # Hourly headcounts: the workshop is occupied from hour 1 to hour 10, empty at hour 11.
    # Held exactly the 8 h limit (hour 9) is allowed, as for a duration point: 超时 is beyond it.
    values = [0, 3, 4, None, 2, 2, 5, 5, 1, 2, 2, 0]
    per_reading, events, state = run(rules, "PC1", "YHBZ-PC", values, step=3600)
    assert [i for i, found in enumerate(per_reading) if found] == [10, 11]
    raised, cleared = events
    assert (raised.event, raised.value, raised.threshold, raised.unit) == (
        RAISE,
        9 * 3600.0,
        8 * 3600.0,
        "s",
    )
    assert raised.detail == "held 9h"
    assert (cleared.event, cleared.detail) == (CLEAR, "ended after 10h")
    assert state.since == {}


# --- H/HH/L/LL with deadband; BAD readings; event naming; config changes ---------------------

LIMIT_TABLE = [
    (5.0, []),
    (8.5, [(RAISE, "H")]),
    (8.46, []),
    (8.44, [(CLEAR, "H")]),
    (9.5, [(RAISE, "H"), (RAISE, "HH")]),
    (8.96, []),
    (8.9, [(CLEAR, "HH")]),
    (1.0, [(CLEAR, "H"), (RAISE, "L")]),
    (0.3, [(RAISE, "LL")]),
    (0.54, []),
    (0.56, [(CLEAR, "LL")]),
    (None, []),  # BAD: holds L
    (5.0, [(CLEAR, "L")]),
]


def test_limits_with_deadband_and_hysteresis() -> None:
    rules = site_rules(
        "WHP",
        [
            (
                "point: L1, quota: WHP-LT, deadband: 0.05,"
                " thresholds: {low_low: 0.5, low: 1.0, high: 8.5, high_high: 9.0}"
            )
        ],
    )
    per_reading, _, _ = run(rules, "L1", "WHP-LT", [v for v, _ in LIMIT_TABLE])
    assert per_reading == [expected for _, expected in LIMIT_TABLE]


def test_bad_readings_never_raise_or_clear() -> None:
    rules = site_rules("WHP", ["point: L1, quota: WHP-LT, thresholds: {high: 8.5}"])
    _, _, state = run(rules, "L1", "WHP-LT", [9.0])
    for value in (0.0, 20.0, None):
        bad = reading("L1", "WHP-LT", 5, value, Quality.BAD)
        events, after = evaluate(rules, state, bad)
        assert events == ()
        assert after is state
    uncertain = reading("L1", "WHP-LT", 6, 0.0, Quality.UNCERTAIN)
    events, _ = evaluate(rules, state, uncertain)
    assert [(e.event, e.level) for e in events] == [(CLEAR, "H")]


def test_events_name_their_reading_and_pair_by_alarm_id() -> None:
    rules = site_rules("WHP", ["point: L1, quota: WHP-LT, thresholds: {high: 8.5}"])
    _, events, state = run(rules, "L1", "WHP-LT", [9.0, 1.0, 9.0, 1.0], step=10)
    assert [(e.event, e.alarm_id) for e in events] == [
        (RAISE, "L1/H/ns.1"),
        (CLEAR, "L1/H/ns.1"),
        (RAISE, "L1/H/ns.2"),
        (CLEAR, "L1/H/ns.2"),
    ]
    assert [(e.point, e.quota, e.trigger_t, e.t) for e in events] == [
        ("L1", "WHP-LT", iso_time(T0 + at), iso_time(T0 + at)) for at in (0, 10, 20, 30)
    ]
    assert (events[0].value, events[0].threshold, events[0].unit) == (9.0, 8.5, "m")
    assert state.serial == 2


def test_a_batch_keeps_each_event_after_its_reading() -> None:
    rules = site_rules("WHP", ["point: L1, quota: WHP-LT, thresholds: {high: 8.5}"])
    batch = [reading("L1", "WHP-LT", i, v) for i, v in enumerate([1.0, 9.0, 9.1, 1.0])]
    outcome = evaluate_batch(rules, AlarmState("ns"), batch)
    kinds = [
        type(r).__name__ + (f":{r.event}" if isinstance(r, AlarmRecord) else "")
        for r in outcome.records
    ]
    assert kinds == [
        "Reading",
        "Reading",
        "AlarmRecord:raise",
        "Reading",
        "Reading",
        "AlarmRecord:clear",
    ]
    quiet = evaluate_batch(rules, outcome.state, batch[:1])
    assert quiet.state is outcome.state, "an unchanged state is the same object (nothing to save)"


def test_an_alarm_whose_rule_left_the_site_map_is_cleared_by_the_next_reading() -> None:
    before = site_rules("WHP", ["point: L1, quota: WHP-LT, thresholds: {high: 8.5, high_high: 9}"])
    _, raised, state = run(before, "L1", "WHP-LT", [9.5])
    after = site_rules("WHP", ["point: L1, quota: WHP-LT, thresholds: {high: 8.5}"])
    bad = reading("L1", "WHP-LT", 1, None, Quality.BAD)
    assert evaluate(after, state, bad)[0] == ()
    events, state = evaluate(after, state, reading("L1", "WHP-LT", 2, 9.5))
    assert [(e.event, e.level, e.alarm_id) for e in events] == [(CLEAR, "HH", raised[1].alarm_id)]
    assert events[0].detail == "the site map no longer has it"
    assert list(state.active) == ["L1/H"]


def test_alarms_of_a_point_gone_from_the_site_map_are_cleared_by_any_reading() -> None:
    before = site_rules(
        "WHP",
        [
            "point: L1, quota: WHP-LT, thresholds: {high: 8.5}",
            "point: L2, quota: WHP-LT, thresholds: {high: 8.5}",
        ],
    )
    _, raised, state = run(before, "L2", "WHP-LT", [9.5])
    after = site_rules("WHP", ["point: L1, quota: WHP-LT, thresholds: {high: 8.5}"])
    events, state = evaluate(after, state, reading("L1", "WHP-LT", 1, 1.0))
    assert [(e.event, e.alarm_id, e.point) for e in events] == [(CLEAR, raised[0].alarm_id, "L1")]
    assert state.active == {}


def test_points_without_alarms_have_no_rules() -> None:
    rules = compile_rules(
        resolve_points(one_device_site("WHP", ["point: V1, quota: WHP-ESD"], type_="uint16")),
        (),
        default_catalogue(),
    )
    assert rules.points == {}
    assert rules.slots == frozenset()
    assert rules.site_points == {"V1"}
