"""The indicator catalogue: the standards' numbers, strict loading, and unit conversions."""

from __future__ import annotations

import copy
import math
from importlib import resources
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from specs.block import DOMAINS
from specs.catalogue import (
    Binding,
    CatalogueError,
    Direction,
    Edge,
    Indicator,
    Kind,
    default_catalogue,
    load_catalogue,
    parse_catalogue,
)

CATALOGUE = default_catalogue()
TEXT = resources.files("specs.catalogue").joinpath("indicators.yaml").read_text(encoding="utf-8")
DATA: dict[str, Any] = yaml.safe_load(TEXT)

# Every indicator the issue names (spec-facts.md sections 2 and 6.4), plus generic gas.
REQUIRED = {
    "WHP": {"LT", "TT", "PT", "LEL", "TOX", "WT", "WH", "ESD"},
    "WKK": {"WL", "PL", "BL", "RF", "DX", "DY", "DZ", "ID"},
    "YHBZ": {"PC", "PR", "QT", "QR", "DUR"},
    "MK": {"M0101", "M0104", "M0201", "M9999"},
    "BP": {"GX", "GY", "GZ", "RD", "RF", "GW"},
    "GAS": {"LEL", "TOX", "O2"},
}


def _indicator(code: str) -> Indicator:
    indicator = CATALOGUE.get(code)
    assert indicator is not None, code
    return indicator


# --- coverage and data validity ---------------------------------------------------------------


@pytest.mark.parametrize("domain", sorted(REQUIRED))
def test_every_named_indicator_is_catalogued(domain: str) -> None:
    codes = {i.code for i in CATALOGUE.in_domain(domain)}
    assert {f"{domain}-{suffix}" for suffix in REQUIRED[domain]} <= codes


def test_site_domains_are_the_wire_domains_and_gas_is_generic() -> None:
    assert {code for code, d in CATALOGUE.domains.items() if d.site} == DOMAINS
    assert not CATALOGUE.domains["GAS"].site
    usable = {i.code for i in CATALOGUE.for_site("WKK")}
    assert {"WKK-WL", "GAS-LEL", "GAS-O2"} <= usable
    assert not any(code.startswith("WHP-") for code in usable)


@pytest.mark.parametrize("indicator", CATALOGUE.in_domain(None), ids=lambda i: i.code)
def test_every_indicator_is_well_formed(indicator: Indicator) -> None:
    assert indicator.code.startswith(f"{indicator.domain}-")
    assert indicator.domain in CATALOGUE.domains
    assert indicator.name_zh
    assert indicator.name_en
    assert indicator.source
    conversion = indicator.units[indicator.unit]
    assert (conversion.factor, conversion.offset) == (1.0, 0.0)
    assert all(c.factor > 0 for c in indicator.units.values())
    assert indicator.low < indicator.high
    assert set(indicator.alarms) <= set(CATALOGUE.alarm_levels)
    assert len(set(indicator.alarms)) == len(indicator.alarms)
    for threshold in indicator.defaults:
        assert threshold.level in indicator.alarms
        assert threshold.source
        assert indicator.thresholds[threshold.name] == threshold.canonical
    assert set(indicator.thresholds) == {t.name for t in indicator.defaults}
    if indicator.kind is Kind.SWITCH:
        assert (indicator.low, indicator.high) == (0.0, 1.0)


def test_uncertain_coal_codes_say_so_in_their_source() -> None:
    for indicator in CATALOGUE.in_domain("MK"):
        if indicator.code not in {"MK-M0101", "MK-M0104", "MK-M0201", "MK-M9999"}:
            assert indicator.confidence.value == "guessed", indicator.code
            assert "[G]" in indicator.source
            assert "[S-partial]" in indicator.source


def test_ammonia_is_left_out_because_its_unit_is_not_stated() -> None:
    assert CATALOGUE.get("MK-M0108") is None


def test_unknown_unit_is_a_value_error_naming_the_indicator() -> None:
    with pytest.raises(ValueError, match=r"unit 'furlong' is not accepted for WHP-LT"):
        _indicator("WHP-LT").to_canonical(1.0, "furlong")
    with pytest.raises(CatalogueError, match="rate unit"):
        _indicator("BP-GX").rate_to_canonical(1.0, "mm")


# --- the standards' numbers (table tests) -----------------------------------------------------


@pytest.mark.parametrize(
    ("code", "name", "expected", "cite"),
    [
        # GB/T 50493-2019: combustible gas level 1 <= 25 %LEL, level 2 <= 50 %LEL.
        ("WHP-LEL", "L1", ("L1", Edge.RAISE, ">=", 25.0, "%LEL", Binding.LIMIT), "GB/T 50493"),
        ("WHP-LEL", "L2", ("L2", Edge.RAISE, ">=", 50.0, "%LEL", Binding.LIMIT), "GB/T 50493"),
        ("GAS-LEL", "L1", ("L1", Edge.RAISE, ">=", 25.0, "%LEL", Binding.LIMIT), "GB/T 50493"),
        ("GAS-LEL", "L2", ("L2", Edge.RAISE, ">=", 50.0, "%LEL", Binding.LIMIT), "GB/T 50493"),
        # 煤矿安全规程 / AQ 1029, working face: alarm 1.0, power-off 1.5, restore below 1.0; a
        # reference, as other locations lawfully differ (coal bunker 1.50 / 1.50 / 1.49).
        ("MK-M0101", "alarm", ("alarm", Edge.RAISE, ">=", 1.0, "%CH4", Binding.REFERENCE), "1.50"),
        (
            "MK-M0101",
            "power_off",
            ("power_off", Edge.RAISE, ">=", 1.5, "%CH4", Binding.REFERENCE),
            "1.50",
        ),
        (
            "MK-M0101",
            "restore",
            ("power_off", Edge.CLEAR, "<", 1.0, "%CH4", Binding.REFERENCE),
            "1.49",
        ),
        ("MK-M0104", "alarm", ("alarm", Edge.RAISE, ">=", 24.0, "ppm", Binding.LIMIT), "24"),
        # GB 51214-2017 §12.3.3 reference values.
        ("BP-GX", "rate_1d", ("rate", Edge.RAISE, ">", 10.0, "mm/d", Binding.REFERENCE), "51214"),
        ("BP-GX", "rate_1h", ("rate", Edge.RAISE, ">=", 5.0, "mm/h", Binding.REFERENCE), "51214"),
        ("BP-CW", "H", ("H", Edge.RAISE, ">", 50.0, "mm", Binding.REFERENCE), "51214"),
        # GB/T 50493-2019 oxygen (recalled): under 19.5 %VOL, over 23.5 %VOL.
        ("GAS-O2", "L", ("L", Edge.RAISE, "<", 19.5, "%VOL", Binding.REFERENCE), "[R"),
        ("GAS-O2", "H", ("H", Edge.RAISE, ">", 23.5, "%VOL", Binding.REFERENCE), "[R"),
    ],
)
def test_standard_thresholds(
    code: str, name: str, expected: tuple[str, Edge, str, float, str, Binding], cite: str
) -> None:
    threshold = _indicator(code).threshold(name)
    assert threshold is not None
    found = (threshold.level, threshold.edge, threshold.op, threshold.value, threshold.unit)
    assert (*found, threshold.binding) == expected
    assert cite in threshold.source


@pytest.mark.parametrize("code", ["BP-GX", "BP-GY", "BP-GZ", "BP-RD"])
def test_slope_displacement_rates_over_an_hour_and_a_day(code: str) -> None:
    indicator = _indicator(code)
    assert "rate" in indicator.alarms
    assert indicator.rate_unit == "mm/d"
    assert {"mm/h", "mm/d"} <= set(indicator.rate_units)
    day, hour = indicator.threshold("rate_1d"), indicator.threshold("rate_1h")
    assert day is not None
    assert hour is not None
    assert (day.window, day.canonical) == (86400.0, 10.0)
    assert (hour.window, hour.canonical) == (3600.0, 120.0)  # 5 mm/h in mm/d
    assert indicator.rate_to_canonical(5.0, "mm/h") == pytest.approx(120.0)
    assert indicator.thresholds == {"rate_1d": 10.0, "rate_1h": 120.0}


def test_threshold_comparisons_follow_the_standards_wording() -> None:
    # The comparison and the number as the standard words them, as `edge-agent catalogue`
    # shows them (op, canonical): each pair fixes which side of the number meets the threshold.
    methane = _indicator("MK-M0101")
    alarm, restore = methane.threshold("alarm"), methane.threshold("restore")
    assert alarm is not None
    assert restore is not None
    assert (alarm.edge, alarm.op, alarm.canonical) == (Edge.RAISE, ">=", 1.0)  # ">= 1.0"
    assert (restore.edge, restore.op, restore.canonical) == (Edge.CLEAR, "<", 1.0)  # "below 1.0"
    day = _indicator("BP-GZ").threshold("rate_1d")
    assert day is not None
    assert (day.op, day.canonical, day.unit) == (">", 10.0, "mm/d")  # "> 10 mm/d"
    oxygen = _indicator("GAS-O2").threshold("L")
    assert oxygen is not None
    assert (oxygen.op, oxygen.canonical) == ("<", 19.5)  # "below 19.5 %"


def test_gas_levels_and_coal_vocabulary() -> None:
    assert [a.level for a in CATALOGUE.vocabulary("gas")] == ["L1", "L2"]
    assert [a.level for a in CATALOGUE.vocabulary("coal")] == ["alarm", "power_off"]
    assert [a.level for a in CATALOGUE.vocabulary("limit")] == ["LL", "L", "H", "HH"]
    assert CATALOGUE.alarm_levels["LL"].direction is Direction.BELOW
    assert _indicator("WHP-TOX").alarms == ("L1", "L2")
    assert _indicator("WHP-TOX").thresholds == {}  # per gas: %OEL has no ppm default
    assert _indicator("MK-M0101").alarms == ("alarm", "power_off")


def test_tailings_colours_ascend_and_escalate_one_step_at_a_time() -> None:
    colours = CATALOGUE.vocabulary("colour")
    assert [(a.level, a.rank) for a in colours] == [
        ("blue", 1),
        ("yellow", 2),
        ("orange", 3),
        ("red", 4),
    ]
    for indicator in CATALOGUE.in_domain("WKK"):
        assert indicator.alarms == ("blue", "yellow", "orange", "red"), indicator.code
    assert [(e.level, e.count, e.to) for e in CATALOGUE.escalation] == [
        ("blue", 4, "yellow"),
        ("yellow", 3, "orange"),
        ("orange", 2, "red"),
    ]


@pytest.mark.parametrize(
    ("code", "level", "compare_to"),
    [
        ("YHBZ-PC", "over_staff", "YHBZ-PR"),
        ("YHBZ-QT", "over_quantity", "YHBZ-QR"),
        ("YHBZ-DUR", "overtime", None),
    ],
)
def test_fireworks_derived_alarms(code: str, level: str, compare_to: str | None) -> None:
    indicator = _indicator(code)
    assert indicator.alarms == (level,)
    assert CATALOGUE.alarm_levels[level].family == "derived"
    assert indicator.compare_to == compare_to
    if compare_to is not None:
        assert _indicator(compare_to).unit == indicator.unit


@pytest.mark.parametrize(
    ("code", "value", "unit", "canonical"),
    [
        ("WHP-TT", 273.15, "K", 0.0),
        ("WHP-TT", 212.0, "°F", 100.0),
        ("WHP-TT", 32.0, "°F", 0.0),
        ("WHP-PT", 250.0, "kPa", 0.25),
        ("WHP-LT", 8500.0, "mm", 8.5),
        ("MK-M0101", 10000.0, "ppm", 1.0),
        ("YHBZ-DUR", 90.0, "s", 1.5),
        ("YHBZ-QT", 0.5, "t", 500.0),
        ("BP-GX", 1.2, "cm", 12.0),
    ],
)
def test_known_conversions(code: str, value: float, unit: str, canonical: float) -> None:
    assert _indicator(code).to_canonical(value, unit) == pytest.approx(canonical, abs=1e-9)


# --- unit conversions round-trip ------------------------------------------------------------

UNIT_CASES = [(i.code, unit) for i in CATALOGUE.in_domain(None) for unit in i.units]
RATE_CASES = [(i.code, unit) for i in CATALOGUE.in_domain(None) for unit in i.rate_units]
finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)


@given(st.sampled_from(UNIT_CASES), finite)
def test_to_canonical_and_back_is_the_identity(case: tuple[str, str], value: float) -> None:
    code, unit = case
    indicator = _indicator(code)
    back = indicator.from_canonical(indicator.to_canonical(value, unit), unit)
    assert back == pytest.approx(value, rel=1e-9, abs=1e-6)


@given(st.sampled_from(UNIT_CASES), finite, finite)
def test_conversions_keep_order(case: tuple[str, str], a: float, b: float) -> None:
    code, unit = case
    indicator = _indicator(code)
    low, high = sorted((a, b))
    assert indicator.to_canonical(low, unit) <= indicator.to_canonical(high, unit)


@given(st.sampled_from(RATE_CASES), finite)
def test_rate_units_round_trip(case: tuple[str, str], value: float) -> None:
    code, unit = case
    indicator = _indicator(code)
    conversion = indicator.rate_units[unit]
    canonical = indicator.rate_to_canonical(value, unit)
    assert conversion.from_canonical(canonical) == pytest.approx(value, rel=1e-9, abs=1e-6)


# --- strict loading -----------------------------------------------------------------------------


def _data_error(mutate: Any) -> str:
    data = copy.deepcopy(DATA)
    mutate(data)
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue(data)
    return str(caught.value)


def _entry(data: dict[str, Any], code: str) -> dict[str, Any]:
    entry: dict[str, Any] = next(i for i in data["indicators"] if i["code"] == code)
    return entry


def test_the_shipped_data_tree_parses_to_the_same_catalogue() -> None:
    assert parse_catalogue(copy.deepcopy(DATA)).indicators == CATALOGUE.indicators


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: _entry(d, "WHP-LT").update(colour="red"), "colour: unknown key"),
        (lambda d: _entry(d, "WHP-LT").update(unit="ft"), "canonical unit 'ft' not in its units"),
        (
            lambda d: _entry(d, "WHP-LT")["units"].update(m={"factor": 2}),
            "canonical unit must convert as factor 1, offset 0",
        ),
        (lambda d: _entry(d, "WHP-LT").update(range=[40, 0]), "range low 40 is not below high 0"),
        (lambda d: _entry(d, "WHP-LT").update(domain="XYZ"), "domain XYZ is not in domains"),
        (lambda d: _entry(d, "WHP-LT").update(code="WKK-LT"), "must be WHP-<SUFFIX>"),
        (
            lambda d: _entry(d, "WHP-TOX").update(
                thresholds={"HH": {"value": 5, "binding": "limit", "source": "x"}}
            ),
            "level HH is not in this indicator's alarms",
        ),
        (
            lambda d: _entry(d, "WHP-LEL")["thresholds"]["L1"].update(value="25"),
            "must be a number",
        ),
        (
            lambda d: _entry(d, "WHP-LEL")["thresholds"]["L2"].update(value=20),
            "L2 is less severe than L1",
        ),
        (
            lambda d: _entry(d, "MK-M0101")["thresholds"]["restore"].update(value=1.6),
            "clears beyond where power_off raises",
        ),
        (
            lambda d: _entry(d, "MK-M0101")["thresholds"]["alarm"].update(op="<"),
            "a raise of alarm compares with",
        ),
        (
            lambda d: _entry(d, "WHP-LEL")["thresholds"]["L1"].update(value=250),
            "outside the indicator's range",
        ),
        (lambda d: _entry(d, "WHP-LT").update(alarms=["H", "HX"]), "alarm level HX is unknown"),
        (lambda d: _entry(d, "WHP-LT").update(alarms=["H", "L"]), "listed low to high"),
        (
            lambda d: _entry(d, "WKK-WL").update(alarms=["yellow", "blue"]),
            "colour levels must be listed low to high",
        ),
        (
            lambda d: _entry(d, "WHP-LT")["units"].update(mm={"factor": 0}),
            "factor must be positive",
        ),
        (lambda d: d["indicators"].append(d["indicators"][0]), "indicator WHP-LT is listed twice"),
        (lambda d: d["domains"].pop(0), "site domains"),
        (lambda d: d["escalation"][0].update(to="orange"), "blue must escalate to the next level"),
        (lambda d: d["alarm_levels"][0].update(direction="up"), "direction"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: _entry(d, "BP-GX").pop("rate_unit"), "rate_unit and rate_units"),
        (
            lambda d: _entry(d, "BP-GY").update(
                thresholds={
                    "r": {"level": "rate", "value": 5, "binding": "reference", "source": "x"}
                }
            ),
            "a rate threshold needs a window",
        ),
        (lambda d: _entry(d, "YHBZ-PC").update(compare_to="YHBZ-QR"), "must share domain and unit"),
        (lambda d: _entry(d, "WHP-LT").update(compare_to="WHP-TT"), "needs a derived alarm level"),
        (lambda d: _entry(d, "WHP-ESD").update(range=[0, 2]), "a switch has range [0, 1]"),
        (lambda d: _entry(d, "YHBZ-PC").update(range=[0, 2.5]), "a count's range"),
        (lambda d: _entry(d, "WHP-LT").update(confidence="sure"), "confidence"),
    ],
)
def test_a_broken_data_tree_is_refused(mutate: Any, expected: str) -> None:
    assert expected in _data_error(mutate)


def test_errors_name_file_line_and_key() -> None:
    text = TEXT.replace("    range: [0.0, 40.0]\n", "    range: [40.0, 0.0]\n", 1)
    line = TEXT.splitlines().index("    range: [0.0, 40.0]") + 1
    with pytest.raises(CatalogueError) as caught:
        load_catalogue(text, "indicators.yaml")
    assert str(caught.value) == (
        f"indicators.yaml:{line}: indicators[0].range: range low 40 is not below high 0"
    )
    assert caught.value.issues[0].line == line


def test_duplicate_yaml_keys_are_refused() -> None:
    text = TEXT.replace("    name_en: tank level\n", "    name_en: tank level\n    name_en: x\n", 1)
    with pytest.raises(CatalogueError, match=r"indicators\[0\]\.name_en: duplicate key"):
        load_catalogue(text)


def test_fractions_are_exact() -> None:
    fahrenheit = _indicator("WHP-TT").units["°F"]
    assert fahrenheit.factor == 5 / 9
    assert math.isclose(fahrenheit.offset, -160 / 9)
