"""Coal export formatter (MT/T 1201 style): exact text for a small fixture, and its pieces."""

from __future__ import annotations

import pytest

from collector.export.aqss import (
    AQMC_FIELDS,
    AQSS_FIELDS,
    CoalReading,
    aqss_record,
    data_time,
    export_text,
    nonconforming_points,
    note_points,
    number,
    sensor_code,
    transducer_type,
)
from collector.readmodel import PointMetaRow, ReadingRow
from tests.support.collector_client import BASE_TIME, MINE_CODE, catalogue_with_coal

METHANE = f"{MINE_CODE}-1-1046"
CO = f"{MINE_CODE}-000002-005827"
GATEWAY = "gw-coal"  # of the stored rows; the exported records name the mine code only


def _reading(
    point: str, quota: str, dt: float, value: float | None, quality: str = "good"
) -> CoalReading:
    unit = {"MK-M0101": "%CH4", "MK-M0104": "ppm"}.get(quota, "℃")
    reading = ReadingRow(GATEWAY, point, quota, BASE_TIME + dt, value, unit, quality, ())
    return CoalReading(MINE_CODE, reading)


# In storage order: by point, then time.
READINGS = [
    _reading(CO, "MK-M0104", 0.0, 12.0),
    _reading(METHANE, "MK-M0101", 0.0, 0.52),
    _reading(METHANE, "MK-M0101", 30.5, None, "bad"),
    _reading(METHANE, "MK-M0101", 60.0, 1.2, "uncertain"),
    _reading("TEMP-7", "XX-TEMP", 0.0, -0.001),  # a quota no catalogue lists
]


def _meta(point: str, quota: str, name: str, device: str, **thresholds: float) -> PointMetaRow:
    unit = {"MK-M0101": "%CH4"}.get(quota, "℃")
    return PointMetaRow(GATEWAY, point, quota, unit, name, device, thresholds, BASE_TIME - 3600)


INFOS = {
    METHANE: _meta(
        METHANE, "MK-M0101", "回风巷甲烷", "1201回风巷", alarm=0.75, power_off=1.0, restore=0.9
    ),
    "TEMP-7": _meta("TEMP-7", "XX-TEMP", "变电所;温度", "substation~1", high=34.0),
}

GOLDEN = (
    "KJ;AQMC|"
    "610631015;2026-05-29 03:26:40;TEMP-7;000000;M9999;变电所 温度;substation 1;℃;;;"
    "-0.01;-0.01;-0.01;34.00;-0.01;-0.01;-0.01;-0.01~"
    "610631015;2026-05-29 03:26:40;001046;000001;M0101;回风巷甲烷;1201回风巷;%CH4;;;"
    "0.00;100.00;-0.01;0.75;-0.01;1.00;-0.01;0.90~"
    "610631015;2026-05-29 04:26:40;005827;000002;M0104;一氧化碳;610631015-000002-005827;ppm;;;"
    "0.00;1000.00;-0.01;-0.01;-0.01;-0.01;-0.01;-0.01~"
    "‖\n"
    "KJ;AQSS|"
    "610631015;2026-05-29 04:26:40;000002;005827;12.00;;0~"
    "610631015;2026-05-29 04:26:40;000001;001046;0.52;;0~"
    "610631015;2026-05-29 04:27:10;000001;001046;;;2~"
    "610631015;2026-05-29 04:27:40;000001;001046;1.20;;1~"
    "610631015;2026-05-29 04:26:40;000000;TEMP-7;0.00;;0~"
    "‖\n"
)


def test_golden_text() -> None:
    assert export_text(READINGS, INFOS, catalogue_with_coal()) == GOLDEN


def test_records_have_one_field_per_column() -> None:
    aqmc, aqss = GOLDEN.splitlines()
    for line, fields in ((aqmc, AQMC_FIELDS), (aqss, AQSS_FIELDS)):
        assert line.endswith("‖")
        body = line.partition("|")[2].removesuffix("‖")
        records = body.split("~")
        assert records[-1] == ""  # every record ends with ~
        assert all(len(r.split(";")) == len(fields) for r in records[:-1])


def test_empty_window_is_two_empty_batches() -> None:
    assert export_text([], {}, catalogue_with_coal()) == "KJ;AQMC|‖\nKJ;AQSS|‖\n"


@pytest.mark.parametrize(
    ("point", "station", "transducer", "conforming"),
    [
        ("610631015-000001-001046", "000001", "001046", True),
        ("610631015-3-77", "000003", "000077", True),
        ("610631015-1234567-1", "000000", "610631015-1234567-1", False),  # 7-digit station
        ("61063101-1-1", "000000", "61063101-1-1", False),  # 8-digit mine code
        ("CH4-01", "000000", "CH4-01", False),
        ("a;b~c", "000000", "a b c", False),
    ],
)
def test_sensor_codes(point: str, station: str, transducer: str, conforming: bool) -> None:
    code = sensor_code(point)
    assert (code.station, code.transducer, code.conforming) == (station, transducer, conforming)


@pytest.mark.parametrize(
    ("quota", "code"),
    [("MK-M0101", "M0101"), ("MK-M0104", "M0104"), ("MK-M9999", "M9999"), ("WHP-LT", "M9999")],
)
def test_transducer_type_is_the_m_code(quota: str, code: str) -> None:
    assert transducer_type(quota) == code


def test_numbers_times_and_states() -> None:
    assert [number(v) for v in (1.0, 0.755, -0.001, 24.0, None)] == [
        "1.00",
        "0.76",
        "0.00",
        "24.00",
        "-0.01",
    ]
    assert data_time(BASE_TIME + 0.999) == "2026-05-29 04:26:40"  # fractions are dropped
    odd = _reading(METHANE, "MK-M0101", 0.0, 0.1, "garbage")
    assert aqss_record(odd).endswith(";2~")  # an unknown quality is not "normal"


def test_first_reading_of_a_point_defines_it() -> None:
    seen = note_points({}, reversed(READINGS))
    assert seen[(MINE_CODE, METHANE)].first_t == BASE_TIME
    assert nonconforming_points(seen.values()) == ("TEMP-7",)
