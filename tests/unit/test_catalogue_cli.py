"""`edge-agent catalogue`: the table, the JSON, the domain filter and its usage error."""

from __future__ import annotations

import json
import unicodedata

from click.testing import CliRunner

from edge_agent.cli import main
from specs.catalogue import default_catalogue


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["catalogue", *args])
    return result.exit_code, result.stdout, result.stderr


def _cells(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def test_table_lists_every_indicator_with_its_columns() -> None:
    code, out, err = _invoke()
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split("  ")[0] == "code"
    for column in ("name_zh", "name_en", "unit", "range", "alarms", "default thresholds"):
        assert column in lines[0]
    assert len(lines) == 1 + len(default_catalogue().indicators)
    methane = next(line for line in lines if line.startswith("MK-M0101 "))
    for text in ("甲烷", "methane", "%CH4", "0..100", "alarm,power_off"):
        assert text in methane
    assert "alarm >=1 %CH4, power_off >=1.5 %CH4, restore <1 %CH4" in methane


def test_table_columns_line_up_with_chinese_names() -> None:
    _, out, _ = _invoke("--domain", "WHP")
    lines = out.splitlines()
    starts = {
        _cells(line[: line.index(word)]) for line, word in zip(lines, _units(lines), strict=True)
    }
    assert len(starts) == 1


def _units(lines: list[str]) -> list[str]:
    """The word in the unit column of each line (the header's, then each indicator's)."""
    catalogue = default_catalogue()
    units = [f"  {catalogue.indicators[line.split()[0]].unit}  " for line in lines[1:]]
    return ["  unit  ", *units]


def test_domain_filter_is_case_insensitive() -> None:
    code, out, _ = _invoke("--domain", "wkk")
    assert code == 0
    codes = [line.split()[0] for line in out.splitlines()[1:]]
    assert codes == sorted(f"WKK-{s}" for s in ("WL", "PL", "BL", "RF", "DX", "DY", "DZ", "ID"))
    assert "blue,yellow,orange,red" in out


def test_generic_gas_domain_says_it_fits_every_site() -> None:
    code, out, _ = _invoke("--domain", "GAS")
    assert code == 0
    assert "GAS-LEL" in out
    assert "L1 >=25 %LEL, L2 >=50 %LEL" in out
    assert out.splitlines()[-1] == "(GAS indicators may be used on a site of any domain)"


def test_unknown_domain_exits_2_listing_the_domains() -> None:
    code, out, err = _invoke("--domain", "XYZ")
    assert code == 2
    assert out == ""
    assert "unknown domain 'XYZ'" in err
    for domain in ("WHP", "WKK", "YHBZ", "MK", "BP", "GAS"):
        assert domain in err


def test_json_has_every_field_with_units_and_sources() -> None:
    code, out, _ = _invoke("--json")
    assert code == 0
    items = json.loads(out)
    assert [i["code"] for i in items] == sorted(default_catalogue().indicators)
    for item in items:
        assert set(item) == {
            "code",
            "domain",
            "kind",
            "name_zh",
            "name_en",
            "unit",
            "units",
            "range",
            "alarms",
            "thresholds",
            "rate_unit",
            "rate_units",
            "compare_to",
            "confidence",
            "source",
        }
        assert item["units"][item["unit"]] == {"factor": 1.0, "offset": 0.0}
        assert item["source"]
        assert all(t["source"] for t in item["thresholds"])


def test_json_of_one_domain_carries_the_slope_rates() -> None:
    code, out, _ = _invoke("--domain", "BP", "--json")
    assert code == 0
    gx = next(i for i in json.loads(out) if i["code"] == "BP-GX")
    assert gx["rate_unit"] == "mm/d"
    assert gx["rate_units"]["mm/h"] == {"factor": 24.0, "offset": 0.0}
    by_name = {t["name"]: t for t in gx["thresholds"]}
    assert by_name["rate_1h"]["value"] == 5.0
    assert by_name["rate_1h"]["unit"] == "mm/h"
    assert by_name["rate_1h"]["window_s"] == 3600.0
    assert by_name["rate_1d"]["binding"] == "reference"
    assert "GNSS表面位移X" in out  # Chinese prints as itself, not as \u escapes
    assert "GB 51214-2017" in out


def test_json_says_which_coal_defaults_bind() -> None:
    # Methane's are the working face's values, used on every location's MK-M0101 point, so
    # references; CO's 24 ppm binds everywhere.
    code, out, _ = _invoke("--domain", "MK", "--json")
    assert code == 0
    items = {i["code"]: i for i in json.loads(out)}
    methane = {t["name"]: t["binding"] for t in items["MK-M0101"]["thresholds"]}
    assert methane == {"alarm": "reference", "power_off": "reference", "restore": "reference"}
    assert "working-face" in items["MK-M0101"]["thresholds"][0]["source"]
    assert [t["binding"] for t in items["MK-M0104"]["thresholds"]] == ["limit"]
