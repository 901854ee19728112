"""The backfill core: header, offsets, times, and one row to one reading or one reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.backfill.rows import (
    Columns,
    HeaderError,
    OffsetError,
    Rejection,
    RowParser,
    Target,
    TimeFormatError,
    parse_header,
    parse_offset,
    parse_time,
    targets_of,
    wire_time,
)
from edge_agent.config import parse_site_config
from edge_agent.core.points import resolve_points
from specs.catalogue import UnitConversion, default_catalogue
from specs.records import Quality, Reading, iso_time, parse_iso_time

ROOT = Path(__file__).resolve().parents[2]
CST = 8 * 3600
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _targets() -> dict[str, Target]:
    """The tank farm's points; T003-LT-01 reports in cm (its unit in the site map)."""
    site = yaml.safe_load((ROOT / "configs" / "tankfarm.yaml").read_text(encoding="utf-8"))
    for device in site["devices"]:
        for point in device.get("points", []):
            if point["point"] == "T003-LT-01":
                point["unit"] = "cm"
    config = parse_site_config(yaml.safe_dump(site, allow_unicode=True), "site.yaml", ROOT)
    return targets_of(resolve_points(config), default_catalogue())


TARGETS = _targets()
FULL = parse_header(["point", "t", "value", "quality", "unit"])
PARSER = RowParser(FULL, TARGETS, CST)


def _row(point: str, t: str, value: str, quality: str = "", unit: str = "") -> Reading | Rejection:
    return PARSER.parse([point, t, value, quality, unit])


# --- header -------------------------------------------------------------------------------


def test_header_finds_columns_in_any_order_case_and_spacing() -> None:
    columns = parse_header([" Value", "UNIT ", "point", "t"])
    assert columns == Columns(point=2, t=3, value=0, quality=None, unit=1, count=4)


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        (["point", "t"], "column 'value' is missing"),
        (["point", "t", "value", "device"], "column 'device' is unknown"),
        (["point", "t", "value", "t"], "column 't' appears twice"),
        (["pt", "time", "value"], "column 'pt' is unknown"),
    ],
)
def test_header_problems_are_named(header: list[str], problem: str) -> None:
    with pytest.raises(HeaderError, match=problem):
        parse_header(header)


# --- offsets and times --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("+08:00", CST),
        ("+0800", CST),
        ("+08", CST),
        ("-05:30", -(5 * 3600 + 30 * 60)),
        ("Z", 0),
        ("utc", 0),
        (" +00:00 ", 0),
    ],
)
def test_offsets(text: str, seconds: int) -> None:
    assert parse_offset(text) == seconds


@pytest.mark.parametrize("text", ["8", "+8:00", "+24:00", "+08:60", "Asia/Shanghai", ""])
def test_bad_offsets(text: str) -> None:
    with pytest.raises(OffsetError):
        parse_offset(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-01 08:00:00", "2024-03-01T00:00:00.000+00:00"),
        ("2024-03-01T08:00:00", "2024-03-01T00:00:00.000+00:00"),
        ("2024-03-01 08:00", "2024-03-01T00:00:00.000+00:00"),
        ("2024-03-01 08:00:00.5", "2024-03-01T00:00:00.500+00:00"),
        ("2024-03-01 08:00:00,25", "2024-03-01T00:00:00.250+00:00"),
        ("2024-03-01 08:00:00.123000000", "2024-03-01T00:00:00.123+00:00"),
        ("2024-03-01 08:00:00.9990", "2024-03-01T00:00:00.999+00:00"),
        ("2024-03-01T00:00:00Z", "2024-03-01T00:00:00.000+00:00"),
        ("2024-03-01T02:00:00+02:00", "2024-03-01T00:00:00.000+00:00"),
        ("2024-03-01T00:00:00-0130", "2024-03-01T01:30:00.000+00:00"),
        ("2024-03-01 01:00:00", "2024-02-29T17:00:00.000+00:00"),  # leap day, local midnight
    ],
)
def test_times(text: str, expected: str) -> None:
    assert wire_time(parse_time(text, CST)) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("2024-03-01", "not ISO 8601"),
        ("2024-03-01 8:00:00", "not ISO 8601"),
        ("20240301T080000", "not ISO 8601"),
        ("2024-W09-5 08:00:00", "not ISO 8601"),
        ("2024-03-01 08:00:00 +08:00", "not ISO 8601"),
        ("٢٠٢٤-03-01 08:00:00", "not ISO 8601"),  # digits of another script
        ("2023-02-29 08:00:00", "no such date"),
        ("2024-13-01 08:00:00", "no such date"),
        ("2024-03-01 24:00:00", "no such time of day"),
        ("2024-03-01 08:60:00", "no such time of day"),
        ("2024-03-01 08:00:60", "no such time of day"),
        ("2024-03-01 08:00:00+24:00", "no such UTC offset"),
        # The wire carries milliseconds: a finer time is refused, not cut (a reading's time
        # is never altered; .0004 and .0009 would become one reading).
        ("2024-03-01 08:00:00.0004", "finer than the millisecond gz/1 carries"),
        ("2024-03-01 08:00:00.9999", "finer than the millisecond gz/1 carries"),
        ("2024-03-01 08:00:00,123000001", "finer than the millisecond gz/1 carries"),
        # The bounds are instants: 1970-01-01 at +08:00 and the last day of 2999 but its
        # midnight are outside too, which "outside 1970..2999" did not say.
        ("1970-01-01 07:59:59", "before 1970-01-01T00:00:00Z or after 2999-12-31T00:00:00Z"),
        ("1970-01-01 00:00:00", "before 1970-01-01T00:00:00Z or after 2999-12-31T00:00:00Z"),
        ("2999-12-31 23:59:59Z", "before 1970-01-01T00:00:00Z or after 2999-12-31T00:00:00Z"),
        ("3000-01-01 08:00:00", "before 1970-01-01T00:00:00Z or after 2999-12-31T00:00:00Z"),
    ],
)
def test_bad_times(text: str, reason: str) -> None:
    with pytest.raises(TimeFormatError, match=reason):
        parse_time(text, CST)


moments = st.datetimes(
    min_value=datetime(1970, 1, 2),  # noqa: DTZ001 - naive bounds, the zone comes separately
    max_value=datetime(2200, 1, 1),  # noqa: DTZ001
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))]),
)
ms_moments = moments.map(lambda m: m.replace(microsecond=m.microsecond // 1000 * 1000))


@given(ms_moments, st.sampled_from(["T", " "]))
def test_parse_time_is_exact_to_the_millisecond(moment: datetime, separator: str) -> None:
    text = moment.isoformat(sep=separator, timespec="microseconds")  # .123000: zeros beyond
    assert parse_time(text, 0) == (moment - EPOCH) // timedelta(microseconds=1)


@given(moments.filter(lambda m: m.microsecond % 1000 != 0))
def test_a_time_finer_than_a_millisecond_is_refused(moment: datetime) -> None:
    with pytest.raises(TimeFormatError, match="finer than the millisecond gz/1 carries"):
        parse_time(moment.isoformat(timespec="microseconds"), 0)


@given(ms_moments)
def test_a_naive_time_takes_the_default_offset(moment: datetime) -> None:
    naive = moment.replace(tzinfo=None).isoformat(sep=" ")
    offset = moment.utcoffset()
    assert offset is not None
    assert parse_time(naive, int(offset.total_seconds())) == parse_time(moment.isoformat(), 0)


@given(moments)
def test_wire_time_is_iso_time_of_the_same_moment(moment: datetime) -> None:
    us = (moment - EPOCH) // timedelta(microseconds=1)
    assert wire_time(us) == iso_time(us / 1e6)
    # ... and the wire reads it back to the same millisecond.
    assert round(parse_iso_time(wire_time(us)) * 1000) == us // 1000


# --- rows ---------------------------------------------------------------------------------


def test_a_good_row_becomes_a_backfilled_reading() -> None:
    assert _row("T001-LT-01", "2024-03-01 08:00:00", "5.25") == Reading(
        point="T001-LT-01",
        quota="WHP-LT",
        t="2024-03-01T00:00:00.000+00:00",
        value=5.25,
        unit="m",
        quality=Quality.GOOD,
        flags=("backfill",),
    )


def test_units_convert_to_the_catalogue_unit_without_binary_noise() -> None:
    reading = _row("T001-LT-01", "2024-03-01 08:00:00", "870", unit="cm")
    assert isinstance(reading, Reading)
    assert (reading.value, reading.unit) == (8.7, "m")
    fahrenheit = _row("T001-TT-01", "2024-03-01 08:00:00", "212", unit="°F")
    assert isinstance(fahrenheit, Reading)
    assert (fahrenheit.value, fahrenheit.unit) == (100.0, "℃")


def test_a_row_without_unit_is_in_the_unit_the_site_map_gives_the_point() -> None:
    reading = _row("T003-LT-01", "2024-03-01 08:00:00", "250")
    assert isinstance(reading, Reading)
    assert (reading.value, reading.unit) == (2.5, "m")


def test_quality_is_read_in_any_case_and_defaults_to_good() -> None:
    row = ["T001-LT-01", "2024-03-01 08:00:00", "1"]
    short = RowParser(parse_header(["point", "t", "value"]), TARGETS, CST)
    assert isinstance(parsed := short.parse(row), Reading)
    assert parsed.quality is Quality.GOOD
    uncertain = _row("T001-LT-01", "2024-03-01 08:00:00", "1", quality=" Uncertain ")
    assert isinstance(uncertain, Reading)
    assert uncertain.quality is Quality.UNCERTAIN


def test_a_bad_row_may_have_no_value_a_good_one_may_not() -> None:
    bad = _row("T001-LT-01", "2024-03-01 08:00:00", "", quality="bad")
    assert isinstance(bad, Reading)
    assert (bad.value, bad.quality) == (None, Quality.BAD)
    assert _row("T001-LT-01", "2024-03-01 08:00:00", " ") == Rejection("value ' ' is not a number")


def test_out_of_range_values_are_kept_flagged_and_uncertain() -> None:
    reading = _row("T001-LT-01", "2024-03-01 08:00:00", "-3")
    assert isinstance(reading, Reading)
    assert (reading.value, reading.quality) == (-3.0, Quality.UNCERTAIN)
    assert reading.flags == ("backfill", "out_of_range")
    bad = _row("T001-LT-01", "2024-03-01 08:00:00", "-3", quality="bad")
    assert isinstance(bad, Reading)
    assert bad.quality is Quality.BAD


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        (["T009-LT-01", "2024-03-01 08:00:00", "1", "", ""], "unknown point 'T009-LT-01'"),
        (
            ["T001-LT-01", "2024-03-01", "1", "", ""],
            "bad time '2024-03-01': not ISO 8601 (YYYY-MM-DD hh:mm:ss[+08:00])",
        ),
        (["T001-LT-01", "2024-03-01 08:00:00", "1,5", "", ""], "value '1,5' is not a number"),
        (["T001-LT-01", "2024-03-01 08:00:00", "nan", "", ""], "value 'nan' is not a number"),
        (["T001-LT-01", "2024-03-01 08:00:00", "1_000", "", ""], "value '1_000' is not a number"),
        # float() read digits of any script (12.5, 3) while times take ASCII digits only.
        (
            ["T001-LT-01", "2024-03-01 08:00:00", "\uff11\uff12.\uff15", "", ""],
            "value '\uff11\uff12.\uff15' is not a number in ASCII digits",
        ),
        (
            ["T001-LT-01", "2024-03-01 08:00:00", "\u0663", "", ""],
            "value '\u0663' is not a number in ASCII digits",
        ),
        (
            ["T001-LT-01", "2024-03-01 08:00:00", "1", "", "ft"],
            "unit 'ft' is not convertible to m for T001-LT-01 (WHP-LT accepts cm, m, mm)",
        ),
        (
            ["T001-LT-01", "2024-03-01 08:00:00", "1", "ok", ""],
            "quality 'ok' is not good|uncertain|bad",
        ),
        (["T001-LT-01", "2024-03-01 08:00:00", "1", ""], "expected 5 columns, found 4"),
        (["T001-LT-01", "2024-03-01 08:00:00", "1", "", "", ""], "expected 5 columns, found 6"),
    ],
)
def test_each_rejection_names_its_reason(cells: list[str], reason: str) -> None:
    result = PARSER.parse(cells)
    assert isinstance(result, Rejection)
    assert reason in result.reason


def test_a_value_that_overflows_in_the_catalogue_unit_is_rejected() -> None:
    target = Target(
        "W-01", "YHBZ-W", "kg", "t", {"kg": UnitConversion(1), "t": UnitConversion(1000)}, 0, 1e6
    )
    parser = RowParser(parse_header(["point", "t", "value"]), {"W-01": target}, CST)
    assert parser.parse(["W-01", "2024-03-01 08:00:00", "1e308"]) == Rejection(
        "value '1e308' is too large in kg"
    )
    assert parser.parse(["W-01", "2024-03-01 08:00:00", "2.5"]) == Reading(
        "W-01", "YHBZ-W", "2024-03-01T00:00:00.000+00:00", 2500.0, "kg", Quality.GOOD, ("backfill",)
    )
