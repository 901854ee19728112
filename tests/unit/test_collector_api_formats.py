"""How the API reads and shows values: float32 digits, UTC offsets, bucket widths, Accept."""

from __future__ import annotations

import math
import struct
from datetime import UTC, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.api.core import (
    DAY,
    EveryError,
    OffsetError,
    grid_offset,
    offset_text,
    parse_every,
    parse_utc_offset,
    shortest_float32,
    shown_time,
    wants_csv,
)
from collector.api.csv_rows import csv_text, number_cell
from tests.support.collector_client import BASE_TIME


def _float32(value: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", value))[0])


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (2.4833621978759766, "2.4833622"),  # DESIGN 8's example
        (0.10000000149011612, "0.1"),
        (5.0, "5.0"),
        (-0.0, "-0.0"),
        (3.4028234663852886e38, "3.4028235e+38"),  # largest float32
        (1e-45, "1e-45"),  # smallest float32 subnormal
        (0.1, "0.1"),  # not a float32: unchanged
        (2.48336219787597, "2.48336219787597"),  # not a float32: unchanged
        (1e300, "1e+300"),  # beyond float32: unchanged
    ],
)
def test_shortest_float32_examples(value: float, shown: str) -> None:
    assert repr(shortest_float32(value)) == shown


@given(st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_shortest_float32_round_trips_and_is_never_longer(value: float) -> None:
    shown = shortest_float32(value)
    assert _float32(shown) == value
    assert struct.pack("<f", shown) == struct.pack("<f", value)  # the same bits, sign included
    assert len(repr(shown)) <= len(repr(value))
    # The fewest significant digits: one digit fewer no longer reads back as the float32.
    digits = len(f"{abs(shown):e}".split("e")[0].replace(".", "").rstrip("0")) or 1
    if digits > 1 and value != 0:
        assert _float32(float(f"{value:.{digits - 1}g}")) != value


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_other_floats_stay_as_they_are(value: float) -> None:
    shown = shortest_float32(value)
    if math.isfinite(_float32_or_inf(value)) and _float32(value) == value:
        assert _float32(shown) == value
    else:
        assert shown == value
    assert len(repr(shown)) <= len(repr(value))


def _float32_or_inf(value: float) -> float:
    try:
        return _float32(value)
    except OverflowError:
        return math.inf


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("+08:00", 480), ("-05:30", -330), ("+00:00", 0), ("-00:00", 0), (" 08:00", 480)],
)
def test_utc_offsets(text: str, minutes: int) -> None:
    zone = parse_utc_offset(text)
    assert zone.utcoffset(None) == timedelta(minutes=minutes)


@pytest.mark.parametrize(
    "text", ["08:00", "+8:00", "+0800", "+08", "Z", "UTC", "+14:01", "-15:00", "+08:60", ""]
)
def test_bad_utc_offsets(text: str) -> None:
    with pytest.raises(OffsetError, match="tz"):
        parse_utc_offset(text)


def test_times_show_the_chosen_offset() -> None:
    beijing = parse_utc_offset("+08:00")
    assert shown_time(BASE_TIME) == "2026-05-28T20:26:40.000+00:00"
    assert shown_time(BASE_TIME + 0.25, beijing) == "2026-05-29T04:26:40.250+08:00"
    assert offset_text(beijing) == "+08:00"
    assert offset_text(parse_utc_offset("-05:30")) == "-05:30"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1),
        ("1m", 60),
        ("5m", 300),
        ("15m", 900),
        ("1h", 3600),
        ("1d", DAY),
        ("31d", 31 * DAY),
    ],
)
def test_bucket_widths(text: str, seconds: int) -> None:
    assert parse_every(text) == seconds


@pytest.mark.parametrize("text", ["0s", "32d", "745h", "1w", "1.5h", "-1m", "m", "1 m", "1M", ""])
def test_bad_bucket_widths(text: str) -> None:
    with pytest.raises(EveryError, match="every"):
        parse_every(text)


def test_days_start_at_local_midnight_other_widths_at_utc_multiples() -> None:
    beijing = timezone(timedelta(hours=8))
    assert grid_offset(DAY, beijing) == 8 * 3600
    assert grid_offset(7 * DAY, beijing) == 8 * 3600
    assert grid_offset(3600, beijing) == 0
    assert grid_offset(DAY, UTC) == 0


@pytest.mark.parametrize(
    ("accept", "csv"),
    [
        (None, False),
        ("", False),
        ("application/json", False),
        ("*/*", False),
        ("text/csv", True),
        ("text/csv; charset=utf-8", True),
        ("text/csv, */*;q=0.1", True),
        ("text/csv, */*", True),
        ("application/json, text/csv", False),
        ("application/json;q=0.5, text/csv", True),
        ("text/csv;q=0", False),
        ("text/csv;q=0.2, */*", False),
        ("TEXT/CSV", True),
    ],
)
def test_csv_is_chosen_only_when_asked_for(accept: str | None, csv: bool) -> None:
    assert wants_csv(accept) is csv


def test_csv_rows_follow_rfc_4180() -> None:
    text = csv_text([["a", "b"], ['甲烷,"CH4"', "line\nbreak"], ["", "2.5"]])
    assert text == 'a,b\r\n"甲烷,""CH4""","line\nbreak"\r\n,2.5\r\n'
    assert number_cell(2.4833621978759766) == "2.4833622"
    assert number_cell(None) == ""
    assert number_cell(0.1) == "0.1"
