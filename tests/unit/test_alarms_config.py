"""Alarm keys of the site map: what they resolve to, and every mistake at its file:line."""

from __future__ import annotations

import pytest

from edge_agent.core.alarms import CompareRule, HeldRule, ItemRule
from edge_agent.core.alarms.build import rules_for_site
from edge_agent.core.points import resolve_points
from specs.catalogue import default_catalogue
from tests.support.config_files import PLC_DEVICE, SITE, Mistake, edit, mistake_id, site_head

# One site that uses every alarm key; each test breaks one line of it.
EXAMPLE = (
    site_head("WKK")
    + PLC_DEVICE
    + """\
      - point: D1
        quota: WKK-DX
        address: {table: input, start: 0, type: float32}
        thresholds: {blue: 10, yellow: 20, orange: 30, red: 40}
        deadband: 0.5
      - point: D2
        quota: WKK-DX
        address: {table: input, start: 2, type: float32}
        unit: mm
        thresholds: {blue: 10, yellow: 20, orange: 30, red: 40}
      - point: B1
        quota: WKK-BL
        address: {table: input, start: 4, type: float32}
        thresholds: {blue: 80, yellow: 60, orange: 40, red: 20}
      - point: G1
        quota: WHP-LEL
        address: {table: input, start: 6, type: float32}
        thresholds: {level1: 20, level2: 40}
        deadband: 1
      - point: M1
        quota: MK-M0101
        address: {table: input, start: 8, type: float32}
        thresholds: {alarm: 0.75, power_off: 1.0, restore: 0.9}
      - point: S1
        quota: BP-GX
        address: {table: input, start: 10, type: float32}
        thresholds: {high: 100}
        rate: {window: 1h, limit: 5, unit: mm/h}
      - point: S2
        quota: BP-GY
        address: {table: input, start: 12, type: float32}
        rate:
          - {window: 1h, limit: 5, unit: mm/h}
          - {window: 1d, limit: 10, unit: mm/d, deadband: 1}
      - {point: PC1, quota: YHBZ-PC, address: {table: input, start: 14, type: uint16}}
      - {point: PR1, quota: YHBZ-PR, address: {table: input, start: 15, type: uint16}}
      - {point: QT1, quota: YHBZ-QT, address: {table: input, start: 16, type: float32}}
      - {point: QR1, quota: YHBZ-QR, address: {table: input, start: 18, type: float32}}
      - {point: W1, quota: YHBZ-DUR, address: {table: input, start: 20, type: float32}}
alarms:
  - {kind: over_staff, point: PC1, limit_point: PR1}
  - {kind: over_quantity, point: QT1, limit: 50}
  - {kind: overtime, point: W1, limit: 8h}
  - {kind: overtime, point: PC1, limit: 30m, when: {above: 0}}
  - {kind: escalation, item: dam-surface, points: [D1, D2]}
"""
)


# --- what the keys resolve to ----------------------------------------------------------------


def test_every_alarm_key_resolves() -> None:
    config = SITE.parse(EXAMPLE)
    points = {p.point: p for p in resolve_points(config)}
    assert (points["G1"].thresholds.level1, points["G1"].thresholds.level2) == (20.0, 40.0)
    m1 = points["M1"].thresholds
    assert (m1.alarm, m1.power_off, m1.restore) == (0.75, 1.0, 0.9)
    assert [(r.window, r.limit, r.unit, r.per_second) for r in points["S1"].rates] == [
        (3600.0, 5.0, "mm/h", 3600.0)
    ]
    assert [(r.unit, r.deadband) for r in points["S2"].rates] == [("mm/h", 0.0), ("mm/d", 1.0)]
    rules = rules_for_site(config, default_catalogue())
    assert rules.points["PR1"].tracked
    (staff,) = rules.points["PC1"].compares
    assert staff == CompareRule("PC1/over_staff", "over_staff", "persons", 0.0, None, "PR1")
    assert rules.points["QT1"].compares[0].limit == 50.0
    assert rules.points["W1"].compares[0].limit == 480.0  # 8 h in the point's minutes
    assert rules.points["PC1"].held == (HeldRule("PC1/overtime", "overtime", 1800.0, above=0.0),)
    assert rules.points["D1"].items == (ItemRule("dam-surface", ("D1", "D2")),)
    falling = {r.level: (r.setpoint, r.clear_at, r.rising) for r in rules.points["B1"].levels}
    assert falling["yellow"] == (60.0, 60.0, False)
    assert "S2/rate.1d" in rules.slots
    assert "item:dam-surface/red" in rules.slots


def test_thresholds_and_rates_in_the_points_unit_become_canonical() -> None:
    text, _ = edit(
        EXAMPLE,
        "        thresholds: {high: 100}\n        rate: {window: 1h, limit: 5, unit: mm/h}",
        "        unit: cm\n        thresholds: {high: 10}\n"
        "        deadband: 0.1\n        rate: {window: 1h, limit: 0.5, unit: cm/h}",
    )
    s1 = next(p for p in resolve_points(SITE.parse(text)) if p.point == "S1")
    assert (s1.thresholds.high, s1.deadband) == (100.0, 1.0)
    # 0.5 cm/h: the change in mm per second times 360 gives cm/h.
    assert [(r.limit, r.unit, r.per_second) for r in s1.rates] == [(0.5, "cm/h", 360.0)]


def test_a_family_left_empty_takes_the_catalogue_defaults() -> None:
    text, _ = edit(EXAMPLE, "        thresholds: {level1: 20, level2: 40}\n", "")
    g1 = next(p for p in resolve_points(SITE.parse(text)) if p.point == "G1")
    assert (g1.thresholds.level1, g1.thresholds.level2) == (25.0, 50.0)  # GB/T 50493-2019


def test_a_family_the_point_sets_takes_no_defaults() -> None:
    # Oxygen's L 19.5 and H 23.5 are references (a catalogue limit may not be left out).
    text, _ = edit(EXAMPLE, "quota: WHP-LEL", "quota: GAS-O2")
    text, _ = edit(text, "{level1: 20, level2: 40}", "{low: 18}")
    g1 = next(p for p in resolve_points(SITE.parse(text)) if p.point == "G1")
    assert (g1.thresholds.low, g1.thresholds.high) == (18.0, None)


# --- each mistake names its line and key -----------------------------------------------------


MISTAKES = [
    # a point's thresholds and rates
    Mistake(
        "{level1: 20, level2: 40}",
        "{high: 20, level2: 40}",
        "devices[0].points[3].thresholds.high",
        "threshold high (alarm level H) is not in the alarm vocabulary of WHP-LEL: L1, L2",
    ),
    Mistake(
        "{level1: 20, level2: 40}",
        "{level1: 20}",
        "devices[0].points[3].thresholds",
        "level2 is left out of the level1/level2 keys this point sets, but the catalogue's L2 "
        ">=50 %LEL for WHP-LEL is a limit (GB/T 50493-2019",
        match="start",
    ),
    Mistake(
        "{level1: 20, level2: 40}",
        "{level1: 20, level2: 55}",
        "devices[0].points[3].thresholds.level2",
        "level2 55 %LEL is laxer than the catalogue's limit L2 >=50 %LEL for WHP-LEL (GB/T",
        match="start",
    ),
    Mistake(
        "{level1: 20, level2: 40}",
        "{level1: 45, level2: 40}",
        "devices[0].points[3].thresholds.level2",
        "level2 (40) is below level1 (45); thresholds must be ordered level1 <= level2",
    ),
    Mistake(
        "{alarm: 0.75, power_off: 1.0, restore: 0.9}",
        "{alarm: 1.2, power_off: 1.0, restore: 0.9}",
        "devices[0].points[4].thresholds.power_off",
        "power_off (1) is below alarm (1.2); thresholds must be ordered alarm <= power_off",
    ),
    Mistake(
        "{alarm: 0.75, power_off: 1.0, restore: 0.9}",
        "{alarm: 0.75, power_off: 1.0, restore: 1.0}",
        "devices[0].points[4].thresholds.restore",
        "restore (1) must be below power_off (1): power comes back only below it",
    ),
    Mistake(
        "{alarm: 0.75, power_off: 1.0, restore: 0.9}",
        "{alarm: 0.75, restore: 0.9}",
        "devices[0].points[4].thresholds.restore",
        "restore applies only with power_off",
    ),
    Mistake(
        "{blue: 80, yellow: 60, orange: 40, red: 20}",
        "{blue: 80, yellow: 60, orange: 70, red: 20}",
        "devices[0].points[2].thresholds.orange",
        (
            "orange (70) after yellow (60): colour thresholds must rise (blue < yellow < orange"
            " < red) or fall (blue > yellow > orange > red) in step"
        ),
    ),
    Mistake(
        "{window: 1h, limit: 5, unit: mm/h}\n      - point: S2",
        "{window: 1h, limit: 5, unit: mm/week}\n      - point: S2",
        "devices[0].points[5].rate.unit",
        (
            "rate unit 'mm/week' must be <unit>/<period> with period s, min, h, d, such as mm/h"
            " or mm/d"
        ),
    ),
    Mistake(
        "{window: 1h, limit: 5, unit: mm/h}\n      - point: S2",
        "{window: 1h, limit: 5, unit: kg/h}\n      - point: S2",
        "devices[0].points[5].rate.unit",
        "rate unit 'kg/h': 'kg' is not accepted for BP-GX; accepted: mm, cm, m",
    ),
    Mistake(
        "{window: 1h, limit: 5, unit: mm/h}\n      - point: S2",
        "{window: 1h, limit: 5, unit: mm/h, deadband: 5}\n      - point: S2",
        "devices[0].points[5].rate.deadband",
        "deadband (5) must be below limit (5)",
    ),
    Mistake(
        "{level1: 20, level2: 40}\n",
        "{level1: 20, level2: 40}\n        rate: {window: 1h, limit: 5, unit: '%LEL/h'}\n",
        "devices[0].points[3].rate",
        "rate alarms are not in the alarm vocabulary of WHP-LEL: L1, L2",
        below=1,
    ),
    Mistake(
        "{window: 1d, limit: 10, unit: mm/d, deadband: 1}",
        "{window: 60m, limit: 9, unit: mm/h}",
        "devices[0].points[6].rate[1].window",
        "a rate over 1h is already set by rate[0]",
    ),
    # the site's alarms
    Mistake(
        "{kind: over_staff, point: PC1, limit_point: PR1}",
        "{kind: over_staff, point: PC9, limit_point: PR1}",
        "alarms[0].point",
        "point 'PC9' is not defined by any device (codes after template expansion)",
    ),
    Mistake(
        "{kind: over_staff, point: PC1, limit_point: PR1}",
        "{kind: over_staff, point: PC1, limit_point: QR1}",
        "alarms[0].limit_point",
        "QR1 (YHBZ-QR, kg) cannot be compared with PC1 (YHBZ-PC, persons)",
    ),
    Mistake(
        "{kind: over_staff, point: PC1, limit_point: PR1}",
        "{kind: over_staff, point: PC1, limit_point: PR1, limit: 5}",
        "alarms[0].limit_point",
        "give exactly one of limit_point and limit",
    ),
    Mistake(
        "{kind: over_quantity, point: QT1, limit: 50}",
        "{kind: over_quantity, point: PC1, limit: 50}",
        "alarms[1].kind",
        "over_quantity is not in the alarm vocabulary of YHBZ-PC: over_staff",
    ),
    Mistake(
        "{kind: overtime, point: W1, limit: 8h}",
        "{kind: overtime, point: W1, limit: 0s}",
        "alarms[2].limit",
        "must be more than 0s, got 0s",
    ),
    Mistake(
        "when: {above: 0}",
        "when: {}",
        "alarms[3].when.above",
        "a condition needs above, below or both",
    ),
    Mistake(
        "{kind: escalation, item: dam-surface, points: [D1, D2]}",
        "{kind: escalation, item: dam-surface, points: [D1, G1]}",
        "alarms[4].points[1]",
        "point 'G1' has no colour thresholds (blue, yellow, orange, red) to escalate",
    ),
    Mistake(
        "{kind: escalation, item: dam-surface, points: [D1, D2]}",
        "{kind: escalation, item: dam-surface, points: [D1, D1]}",
        "alarms[4].points[1]",
        "point 'D1' is already listed at points[0]",
    ),
    Mistake(
        "{kind: escalation, item: dam-surface, points: [D1, D2]}",
        "{kind: escalation, item: dam-surface, points: [D1]}",
        "alarms[4].points",
        "a monitoring item needs at least 2 points to escalate",
    ),
    Mistake(
        "{kind: over_quantity, point: QT1, limit: 50}",
        "{kind: over_staff, point: PC1, limit: 50}",
        "alarms[1].kind",
        "point 'PC1' already has a over_staff alarm (alarms[0])",
    ),
]


@pytest.mark.parametrize("mistake", MISTAKES, ids=mistake_id)
def test_one_mistake_is_one_issue_at_its_line_and_key(mistake: Mistake) -> None:
    SITE.check_mistake(EXAMPLE, mistake)


def test_overtime_of_a_point_that_is_no_duration() -> None:
    text, line = edit(
        EXAMPLE, "{kind: overtime, point: W1, limit: 8h}", "{kind: overtime, point: QT1, limit: 8h}"
    )
    assert [(i.line, i.path, i.message) for i in SITE.issues_of(text)] == [
        (
            line,
            "alarms[2].kind",
            "overtime is not in the alarm vocabulary of YHBZ-QT: over_quantity",
        ),
        (
            line,
            "alarms[2].point",
            (
                "overtime without `when` needs a duration point (unit s, min, h, d); QT1 (YHBZ-QT)"
                " is in kg"
            ),
        ),
    ]


def test_a_second_item_of_the_same_name() -> None:
    text = EXAMPLE + "  - {kind: escalation, item: dam-surface, points: [D2, D1]}\n"
    issue = SITE.only_issue(text)
    assert (issue.line, issue.path) == (len(text.splitlines()), "alarms[5].item")
    assert issue.message == "item 'dam-surface' is already defined by alarms[4]"


def test_an_unknown_kind_names_the_kinds() -> None:
    text, line = edit(EXAMPLE, "{kind: overtime, point: W1, limit: 8h}", "{kind: late, point: W1}")
    issue = SITE.only_issue(text)
    assert (issue.line, issue.path) == (line, "alarms[2]")
    for kind in ("over_staff", "over_quantity", "overtime", "escalation"):
        assert kind in issue.message


def test_an_unknown_alarm_key_is_an_error() -> None:
    text, line = edit(
        EXAMPLE, "{kind: overtime, point: W1, limit: 8h}", "{kind: overtime, point: W1, limt: 8h}"
    )
    assert [(i.line, i.path, i.message) for i in SITE.issues_of(text)] == [
        (line, "alarms[2].limit", "missing required key"),
        (line, "alarms[2].limt", "unknown key"),
    ]
