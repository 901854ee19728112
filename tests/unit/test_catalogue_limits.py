"""A site's thresholds against the catalogue's limits: stricter or equal passes, laxer is refused.

The refusals themselves, as a user reads them, are config cases (tests/config_cases/site/
carbon-monoxide-*, combustible-gas-*, deadband-*); here: which way is laxer for each
comparison, the limits a site may meet exactly, a falling limit (no limit of the shipped
catalogue falls, so a copy marks oxygen's L 19.5 one), and a restore limit, power-off without
restore and a limit in another unit (only methane has them, and its working-face defaults are
references, so a copy binds them: tests/support/catalogues.methane_bound_catalogue).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from configkit.issues import ConfigError
from edge_agent.config import parse_site_config
from edge_agent.config.catalogue_limits import HalfLine
from specs.catalogue import DATA_FILE, Catalogue, Op, load_catalogue
from tests.support.catalogues import methane_bound_catalogue

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE_TEXT = (ROOT / DATA_FILE).read_text(encoding="utf-8")
OXYGEN_LOW = 'L: {value: 19.5, op: "<", binding: reference'

SITE = """\
site:
  enterprise: 91610631MA6YMK001G
  district: "610631"
  domain: MK
  mine_code: "610631015"
  gateway: 91610631MA6YMK001G-GW01
uplink:
  broker: "mqtt://127.0.0.1:1883"
  collector_key: keys/collector.pub
signing:
  key_file: keys/gateway.key
outbox:
  path: state/outbox.db
devices:
  - id: substation-000001
    driver: modbus_tcp
    host: 127.0.0.1
    poll: 1s
    points:
      - point: "610631015-000001-001046"
        quota: {quota}
        unit: {unit}
        address: {{table: holding, start: 0, type: uint16}}
        deadband: {deadband}
        thresholds: {thresholds}
"""


def _parse(
    quota: str,
    thresholds: str,
    unit: str = "null",
    deadband: float = 0.0,
    catalogue: Catalogue | None = None,
) -> None:
    text = SITE.format(quota=quota, unit=unit, deadband=deadband, thresholds=thresholds)
    parse_site_config(text, "site.yaml", Path("/etc/ganzhi"), catalogue=catalogue)


def _refused(*args: object, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _parse(*args, **kwargs)  # type: ignore[arg-type]
    return [f"{issue.path}: {issue.message}" for issue in caught.value.issues]


@pytest.mark.parametrize(
    ("site", "limit", "covers"),
    [
        # A raise above its number: the site's raise must hold wherever the limit's does.
        ((0.9, ">="), (1.0, ">="), True),
        ((1.0, ">="), (1.0, ">="), True),
        ((1.0, ">="), (1.0, ">"), True),
        ((1.0, ">"), (1.0, ">="), False),
        ((1.1, ">="), (1.0, ">="), False),
        # A raise below its number (oxygen low): a smaller number is laxer.
        ((20.0, "<"), (19.5, "<"), True),
        ((19.5, "<"), (19.5, "<"), True),
        ((18.0, "<"), (19.5, "<"), False),
        ((19.5, "<"), (19.5, "<="), False),
    ],
)
def test_a_site_raise_covers_the_limits_or_is_laxer(
    site: tuple[float, Op], limit: tuple[float, Op], covers: bool
) -> None:
    assert HalfLine(*site).covers(HalfLine(*limit)) is covers


@pytest.mark.parametrize(
    ("limit", "site", "within"),
    [
        # A clear below its number (methane restore <1): a larger number clears sooner, laxer.
        ((1.0, "<"), (0.9, "<"), True),
        ((1.0, "<"), (1.0, "<"), True),
        ((1.0, "<"), (1.0, "<="), False),
        ((1.0, "<"), (1.2, "<"), False),
        # A clear above its number (a falling alarm's): a smaller number is laxer.
        ((20.0, ">"), (21.0, ">"), True),
        ((20.0, ">"), (19.0, ">"), False),
    ],
)
def test_a_site_clear_lies_within_the_limits_or_is_laxer(
    limit: tuple[float, Op], site: tuple[float, Op], within: bool
) -> None:
    assert HalfLine(*limit).covers(HalfLine(*site)) is within


@pytest.mark.parametrize(
    ("quota", "thresholds", "unit", "deadband"),
    [
        # Methane's in a copy that binds its working-face values, as limits.
        ("MK-M0101", "{alarm: 1.0, power_off: 1.5, restore: 1.0}", "null", 0.0),  # the limits
        ("MK-M0101", "{alarm: 0.75, power_off: 1.0, restore: 0.9}", "null", 0.02),  # return air
        ("MK-M0101", "{alarm: 10000, power_off: 15000, restore: 10000}", "ppm", 0.0),
        ("MK-M0101", "{alarm: 0.5, power_off: 1.02}", "null", 0.02),  # clears <1.0 as restore
        ("MK-M0101", "{}", "null", 0.99),  # the catalogue's own, clearing above 0
        ("MK-M0104", "{alarm: 24}", "null", 1.0),
        ("WHP-LEL", "{level1: 25, level2: 50}", "null", 0.0),
        ("WHP-LEL", "{level1: 10, level2: 20}", "null", 9.0),
    ],
)
def test_stricter_or_equal_settings_pass(
    quota: str, thresholds: str, unit: str, deadband: float
) -> None:
    _parse(quota, thresholds, unit, deadband, methane_bound_catalogue())


@pytest.mark.parametrize(
    ("point", "start", "end"),
    [
        # A clear below its number (restore <1): power back at a higher value is laxer.
        (
            ("{alarm: 1.0, power_off: 1.5, restore: 1.2}", "null", 0.0),
            "thresholds.restore: restore 1.2 %CH4 is laxer than the catalogue's limit restore <1",
            "at most 1 %CH4",
        ),
        # Power-off without restore clears at power_off - deadband: <1.48, above the limit.
        (
            ("{alarm: 1.0, power_off: 1.5}", "null", 0.02),
            "thresholds.power_off: power_off without restore clears <1.48 %CH4 (power_off - ",
            "set restore too, at most 1 %CH4",
        ),
        # In the point's unit, converted: 15001 ppm is 1.5001 %CH4.
        (
            ("{alarm: 10000, power_off: 15001, restore: 9000}", "ppm", 0.0),
            "thresholds.power_off: power_off 15001 ppm (1.5001 %CH4) is laxer than the catalogue",
            "at most 15000 ppm (1.5 %CH4)",
        ),
    ],
)
def test_methane_bound_in_a_copy_refuses_a_later_restore_and_converts_units(
    point: tuple[str, str, float], start: str, end: str
) -> None:
    (problem,) = _refused("MK-M0101", *point, methane_bound_catalogue())
    assert problem.startswith(f"devices[0].points[0].{start}"), problem
    assert " for MK-M0101" in problem, problem
    assert problem.endswith(end), problem


def test_a_falling_limit_refuses_a_smaller_number() -> None:
    assert OXYGEN_LOW in CATALOGUE_TEXT
    catalogue = load_catalogue(
        CATALOGUE_TEXT.replace(OXYGEN_LOW, OXYGEN_LOW.replace("reference", "limit"))
    )
    _parse("GAS-O2", "{low: 19.5, high: 23.5}", catalogue=catalogue)
    _parse("GAS-O2", "{low: 20.0, high: 25}", catalogue=catalogue)  # H stays a reference
    (problem,) = _refused("GAS-O2", "{low: 18, high: 23.5}", catalogue=catalogue)
    assert problem.startswith(
        "devices[0].points[0].thresholds.low: low 18 %VOL is laxer than the catalogue's limit "
        "L <19.5 %VOL for GAS-O2 (GB/T 50493-2019"
    ), problem
    assert problem.endswith("a site may set it stricter, never laxer: at least 19.5 %VOL")


def test_a_falling_alarms_deadband_may_not_push_its_clear_point_past_the_range() -> None:
    (problem,) = _refused("GAS-O2", "{low: 19.5, high: 99}", deadband=81)
    assert problem == (
        "devices[0].points[0].deadband: deadband 81 %VOL puts the clear point of low "
        "(19.5 %VOL) at >=100.5 %VOL, which no value in GAS-O2's plausible range 0..100 %VOL "
        "reaches: the alarm would never clear"
    ), problem
    # Oxygen low raises below 19.5 (`<`), so it clears at 19.5 + 80.5 = 100 itself.
    _parse("GAS-O2", "{low: 19.5, high: 99}", deadband=80.5)


def test_the_coal_bunkers_aqmc_settings_pass_on_the_shipped_catalogue() -> None:
    """MK-M0101's defaults are the working face's (alarm 1.0, power-off 1.5, restore <1.0); the
    same code is used at every location of a mine and a site map has no location key, so they
    are references: the settings AQMC rows show above a coal bunker (alarm and power-off 1.5,
    restore 1.49) and in return air (0.75 / 1.0 / 0.9) are a site's own and pass."""
    _parse("MK-M0101", "{alarm: 1.5, power_off: 1.5, restore: 1.49}")
    _parse("MK-M0101", "{alarm: 0.75, power_off: 1.0, restore: 0.9}", deadband=0.02)
