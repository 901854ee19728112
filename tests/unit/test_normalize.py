"""normalize: raw sample -> wire reading (scale, offset, unit, quality, flags, time)."""

from __future__ import annotations

import math
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.base import Quality as DriverQuality
from drivers.base import RawSample, ReadColumns
from edge_agent.config import parse_site_config
from edge_agent.core.normalize import (
    PointNormalizer,
    normalize,
    normalize_columns,
    normalize_read,
)
from edge_agent.core.points import ResolvedPoint, resolve_points
from specs.catalogue import Indicator, default_catalogue
from specs.records import Quality, Reading, parse_iso_time
from tests.support.config_files import PLC_DEVICE, site_head

T_WALL = 1_700_000_000.25  # 2023-11-14T22:13:20.250Z
T_MONO = 12_345.0

# A small site map whose points report in non-canonical units (parsed by the real loader).
SITE = (
    site_head()
    + PLC_DEVICE
    + """\
      - {point: LT-M, quota: WHP-LT, address: {table: holding, start: 0, type: float32}}
      - point: LT-MM
        quota: WHP-LT
        unit: mm
        address: {table: holding, start: 2, type: uint16}
      - point: LT-SCALED
        quota: WHP-LT
        unit: cm
        scale: 0.1
        offset: -5.0
        address: {table: holding, start: 3, type: int16}
      - point: TT-K
        quota: WHP-TT
        unit: K
        address: {table: holding, start: 4, type: float32}
      - point: TT-C
        quota: WHP-TT
        scale: 0.1
        offset: -40.0
        address: {table: holding, start: 6, type: int16}
      - point: PT-KPA
        quota: WHP-PT
        unit: kPa
        address: {table: holding, start: 7, type: float32}
      - point: PT-BAR
        quota: WHP-PT
        unit: bar
        address: {table: holding, start: 9, type: float32}
      - point: LEL
        quota: WHP-LEL
        address: {table: input, start: 0, type: float32}
"""
)

POINTS = {p.point: p for p in resolve_points(parse_site_config(SITE, "site.yaml", Path("/x")))}


def indicator(code: str) -> Indicator:
    found = default_catalogue().get(code)
    assert found is not None, code
    return found


def sample(
    value: float | None,
    quality: DriverQuality = DriverQuality.GOOD,
    *,
    error: str | None = None,
    flags: tuple[str, ...] = (),
    t_wall: float = T_WALL,
) -> RawSample:
    return RawSample("k", value, quality, t_wall, T_MONO, (), error=error, flags=flags)


def run(point: str | ResolvedPoint, raw: RawSample, *, clock_synced: bool = True) -> Reading:
    resolved = POINTS[point] if isinstance(point, str) else point
    return normalize(raw, resolved, indicator(resolved.quota), clock_synced=clock_synced)


# --- values: scale, offset, unit ----------------------------------------------------------


@pytest.mark.parametrize(
    ("point", "raw", "expected", "unit"),
    [
        ("LT-M", 5.5, 5.5, "m"),
        ("LT-M", 0.0, 0.0, "m"),
        ("LT-MM", 5500.0, 5.5, "m"),  # mm -> m
        ("LT-MM", 1.0, 0.001, "m"),
        ("LT-SCALED", 1000.0, 0.95, "m"),  # 1000 * 0.1 - 5 = 95 cm -> 0.95 m
        ("TT-K", 273.15, 0.0, "℃"),  # K -> ℃
        ("TT-K", 300.0, 26.85, "℃"),
        ("TT-C", 650.0, 25.0, "℃"),  # 650 * 0.1 - 40
        ("TT-C", 0.0, -40.0, "℃"),
        ("PT-KPA", 250.0, 0.25, "MPa"),  # kPa -> MPa
        ("PT-KPA", -50.0, -0.05, "MPa"),  # slight vacuum, inside -0.1..40 MPa
        ("PT-BAR", 3.0, 0.3, "MPa"),
        ("LEL", 12.5, 12.5, "%LEL"),
    ],
)
def test_value_is_scaled_offset_and_converted(
    point: str, raw: float, expected: float, unit: str
) -> None:
    reading = run(point, sample(raw))
    assert reading.quality is Quality.GOOD
    assert reading.value == pytest.approx(expected, abs=1e-9)
    assert reading.unit == unit
    assert reading.flags == ()
    assert (reading.point, reading.quota) == (point, POINTS[point].quota)


def test_the_resolved_points_carry_the_reported_and_canonical_units() -> None:
    assert [(p.unit, p.canonical_unit) for p in POINTS.values()] == [
        ("m", "m"),
        ("mm", "m"),
        ("cm", "m"),
        ("K", "℃"),
        ("℃", "℃"),
        ("kPa", "MPa"),
        ("bar", "MPa"),
        ("%LEL", "%LEL"),
    ]


def test_a_hand_built_point_works_the_same() -> None:
    point = replace(POINTS["LT-M"], point="HAND-1", scale=2.0, offset=1.0, unit="cm")
    reading = run(point, sample(100.0))  # 100 * 2 + 1 = 201 cm
    assert reading.value == pytest.approx(2.01)
    assert reading.point == "HAND-1"
    assert reading.unit == "m"


def test_driver_uncertain_stays_uncertain_with_its_value_and_flags() -> None:
    reading = run("LT-MM", sample(1500.0, DriverQuality.UNCERTAIN, flags=("stale",)))
    assert reading.quality is Quality.UNCERTAIN
    assert reading.value == pytest.approx(1.5)
    assert reading.flags == ("stale",)


# --- BAD ----------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [None, math.nan, math.inf, -math.inf])
def test_missing_or_non_finite_value_is_bad_without_a_value(raw: float | None) -> None:
    reading = run("TT-K", sample(raw))
    assert reading.quality is Quality.BAD
    assert reading.value is None
    assert reading.unit == "℃"
    if raw is not None:
        assert "not_finite" in reading.flags


def test_a_finite_raw_value_that_overflows_after_scaling_is_bad() -> None:
    point = replace(POINTS["LT-M"], scale=1e300)
    reading = run(point, sample(1e300))
    assert (reading.quality, reading.value) == (Quality.BAD, None)
    assert "not_finite" in reading.flags


@pytest.mark.parametrize(
    ("error", "flag"),
    [
        ("link_down", "link_down"),
        ("link_lost: tank-plc: Connection lost", "link_lost"),
        ("request failed: Modbus Error: [Input/Output] timeout", "request_failed"),
        ("Decode Error: bad registers", "decode_error"),
    ],
)
def test_driver_bad_is_bad_with_a_flag_from_the_error(error: str, flag: str) -> None:
    reading = run("LT-M", sample(None, DriverQuality.BAD, error=error))
    assert reading.quality is Quality.BAD
    assert reading.value is None
    assert reading.flags == (flag,)


def test_driver_bad_drops_a_value_it_still_carried() -> None:
    reading = run("LT-M", sample(4.0, DriverQuality.BAD, error="link_down"))
    assert (reading.quality, reading.value, reading.flags) == (Quality.BAD, None, ("link_down",))


def test_driver_bad_without_error_text_has_no_made_up_flag() -> None:
    reading = run("LT-M", sample(None, DriverQuality.BAD))
    assert (reading.quality, reading.value, reading.flags) == (Quality.BAD, None, ())


def test_an_error_made_only_of_a_colon_still_gives_a_flag() -> None:
    reading = run("LT-M", sample(None, DriverQuality.BAD, error=": nothing before the colon"))
    assert reading.flags == ("read_failed",)


def test_a_long_error_head_gives_a_flag_of_at_most_32_characters() -> None:
    reading = run("LT-M", sample(None, DriverQuality.BAD, error="x" * 100))
    assert reading.flags == ("x" * 32,)


# Error texts the Modbus TCP driver really puts on BAD samples (drivers/modbus/tcp.py, codec.py,
# plan.py). A flag is a machine-readable token: the collector and the API filter on it.
REAL_DRIVER_ERRORS = [
    "modbus exception 2 (ILLEGAL DATA ADDRESS)",
    "modbus exception 11 (GATEWAY TARGET DEVICE FAILED TO RESPOND)",
    "asked for 4 values at holding 0, got 2",
    "float32 needs 2 register(s), got 1",
]


@pytest.mark.parametrize("error", REAL_DRIVER_ERRORS)
def test_flags_from_real_driver_errors_are_clean_tokens(error: str) -> None:
    reading = run("LT-M", sample(None, DriverQuality.BAD, error=error))
    assert len(reading.flags) == 1
    assert re.fullmatch(r"[a-z][a-z0-9_]{0,31}", reading.flags[0]), reading.flags
    assert not reading.flags[0].endswith("_"), reading.flags


# --- UNCERTAIN: out of the plausible range ------------------------------------------------


@pytest.mark.parametrize(
    ("point", "raw", "expected"),
    [
        ("LT-M", 40.5, 40.5),  # WHP-LT range 0..40 m
        ("LT-M", -0.01, -0.01),
        ("LT-MM", 41_000.0, 41.0),  # the range applies to the canonical value
        ("TT-K", 0.0, -273.15),  # -273.15 ℃ is below -60
        ("TT-C", 4000.0, 360.0),
        ("PT-KPA", -200.0, -0.2),  # WHP-PT range -0.1..40 MPa
        ("LEL", 100.5, 100.5),
    ],
)
def test_outside_the_plausible_range_keeps_the_value_but_is_uncertain(
    point: str, raw: float, expected: float
) -> None:
    reading = run(point, sample(raw))
    assert reading.quality is Quality.UNCERTAIN
    assert reading.value == pytest.approx(expected)
    assert reading.flags == ("out_of_range",)


@pytest.mark.parametrize(("point", "raw"), [("LT-M", 0.0), ("LT-M", 40.0), ("LT-MM", 40_000.0)])
def test_range_ends_are_plausible(point: str, raw: float) -> None:
    assert run(point, sample(raw)).quality is Quality.GOOD


def test_in_range_checks_the_canonical_not_the_reported_value() -> None:
    # 5000 mm is far above 40 as a number, but it is 5 m: plausible.
    reading = run("LT-MM", sample(5000.0))
    assert (reading.quality, reading.flags) == (Quality.GOOD, ())


# --- clock and time -----------------------------------------------------------------------


def test_unsynced_clock_flags_good_readings_and_keeps_the_value() -> None:
    reading = run("LT-M", sample(3.0), clock_synced=False)
    assert (reading.quality, reading.value) == (Quality.GOOD, 3.0)
    assert reading.flags == ("clock_unsynced",)


def test_unsynced_clock_adds_to_the_other_flags() -> None:
    out = run("LT-M", sample(50.0, flags=("stale",)), clock_synced=False)
    assert out.quality is Quality.UNCERTAIN
    assert set(out.flags) == {"stale", "clock_unsynced", "out_of_range"}
    bad = run("LT-M", sample(None, DriverQuality.BAD, error="link_down"), clock_synced=False)
    assert set(bad.flags) == {"clock_unsynced", "link_down"}


def test_t_is_iso_8601_with_offset_and_milliseconds_of_the_wall_time() -> None:
    reading = run("LT-M", sample(1.0))
    assert reading.t == "2023-11-14T22:13:20.250+00:00"
    moment = datetime.fromisoformat(reading.t)
    assert moment.utcoffset() == timedelta(0)
    assert moment == datetime.fromtimestamp(T_WALL, UTC)
    assert parse_iso_time(reading.t) == pytest.approx(T_WALL)


def test_bad_readings_carry_the_sample_time_too() -> None:
    reading = run("LT-M", sample(None, DriverQuality.BAD, error="link_down", t_wall=T_WALL + 1))
    assert parse_iso_time(reading.t) == pytest.approx(T_WALL + 1)


def test_reading_round_trips_through_the_wire_format() -> None:
    reading = run("PT-KPA", sample(250.0), clock_synced=False)
    assert reading.to_wire() == {
        "type": "reading",
        "point": "PT-KPA",
        "quota": "WHP-PT",
        "t": "2023-11-14T22:13:20.250+00:00",
        "value": pytest.approx(0.25),
        "unit": "MPa",
        "quality": "good",
        "flags": ["clock_unsynced"],
    }


# --- properties ---------------------------------------------------------------------------

finite_factors = st.floats(min_value=1e-6, max_value=1e6) | st.floats(
    min_value=-1e6, max_value=-1e-6
)


@given(
    value=st.none() | st.floats(allow_nan=True, allow_infinity=True),
    code=st.sampled_from(sorted(POINTS)),
    quality=st.sampled_from(DriverQuality),
    scale=finite_factors,
    offset=st.floats(min_value=-1e6, max_value=1e6),
    synced=st.booleans(),
    error=st.none() | st.text(max_size=60),
    t_wall=st.floats(min_value=0.0, max_value=4e9),
)
def test_normalize_never_raises_and_quality_matches_value(
    *,
    value: float | None,
    code: str,
    quality: DriverQuality,
    scale: float,
    offset: float,
    synced: bool,
    error: str | None,
    t_wall: float,
) -> None:
    point = replace(POINTS[code], scale=scale, offset=offset)
    ind = indicator(point.quota)
    raw = RawSample("k", value, quality, t_wall, T_MONO, (), error=error)
    reading = normalize(raw, point, ind, clock_synced=synced)

    assert (reading.value is None) == (reading.quality is Quality.BAD)
    if reading.value is not None:
        assert math.isfinite(reading.value)
        assert reading.quality is Quality.UNCERTAIN or ind.plausible(reading.value)
        assert ("out_of_range" in reading.flags) == (not ind.plausible(reading.value))
    if quality is DriverQuality.BAD or value is None or not math.isfinite(value):
        assert reading.quality is Quality.BAD
    if quality is DriverQuality.UNCERTAIN and reading.value is not None:
        assert reading.quality is Quality.UNCERTAIN
    assert ("clock_unsynced" in reading.flags) == (not synced)
    assert reading.unit == ind.unit
    assert (reading.point, reading.quota) == (point.point, point.quota)
    assert parse_iso_time(reading.t) == pytest.approx(t_wall, abs=1.1e-3)
    assert all(reading.flags), "no empty flag"


@given(value=st.floats(min_value=-1e6, max_value=1e6))
def test_mm_and_m_points_agree(value: float) -> None:
    in_m = run("LT-M", sample(value / 1000.0))
    in_mm = run("LT-MM", sample(value))
    assert in_m.value is not None
    assert in_mm.value is not None
    assert in_mm.value == pytest.approx(in_m.value, rel=1e-9, abs=1e-12)
    ends = (indicator("WHP-LT").low, indicator("WHP-LT").high)
    if all(abs(in_m.value - end) > 1e-9 for end in ends):  # one ulp apart may straddle an end
        assert in_m.quality is in_mm.quality


# --- normalize_read: a whole read at once -------------------------------------------------

samples_of_a_read = st.lists(
    st.builds(
        RawSample,
        key=st.sampled_from([*sorted(POINTS), "not-configured"]),
        value=st.none() | st.floats(allow_nan=True, allow_infinity=True),
        quality=st.sampled_from(DriverQuality),
        t_wall=st.sampled_from([T_WALL, T_WALL + 0.0004, T_WALL + 1.0]),
        t_mono=st.just(T_MONO),
        error=st.none() | st.sampled_from(["timeout: no reply", "modbus exception 2 (X)"]),
        flags=st.sampled_from([(), ("held",), ("clock_jump",)]),
    ),
    max_size=20,
)


@given(samples=samples_of_a_read, synced=st.booleans(), scale=finite_factors)
def test_a_read_normalized_at_once_is_each_sample_normalized(
    samples: list[RawSample], synced: bool, scale: float
) -> None:
    points = {code: replace(point, scale=scale) for code, point in POINTS.items()}
    prepared = {
        code: PointNormalizer.of(point, indicator(point.quota)) for code, point in points.items()
    }
    want = [
        normalize(s, points[s.key], indicator(points[s.key].quota), clock_synced=synced)
        for s in samples
        if s.key in points
    ]
    assert normalize_read(samples, prepared, clock_synced=synced) == want


def test_every_common_case_reading_equals_normalize_to_the_bit() -> None:
    prepared = {code: PointNormalizer.of(p, indicator(p.quota)) for code, p in POINTS.items()}
    assert all(p.fast for p in prepared.values())
    for code, point in POINTS.items():
        for raw in (0.1, 3.0, 250.0, 300.0, 650.0, 1e-3):
            one = sample(raw)
            (got,) = normalize_read([replace(one, key=code)], prepared, clock_synced=True)
            want = run(point, one)
            assert (got, repr(got.value)) == (want, repr(want.value))


# --- normalize_columns: a columnar read ----------------------------------------------------

_COLUMN_KEYS = [*sorted(POINTS), "not-configured"]


@st.composite
def columnar_reads(draw: st.DrawFn) -> ReadColumns:
    """A read of distinct points, some as columns (GOOD values), the others as samples."""
    keys = draw(st.permutations(_COLUMN_KEYS).map(tuple))
    keys = keys[: draw(st.integers(0, len(keys)))]
    values: list[float | None] = []
    walls: list[float] = []
    others: dict[str, RawSample] = {}
    for key in keys:
        wall = draw(st.sampled_from([T_WALL, T_WALL + 0.0004, T_WALL + 1.0]))
        walls.append(wall)
        if draw(st.booleans()):
            values.append(
                draw(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**31), 2**32))
            )
            continue
        values.append(None)
        others[key] = draw(
            st.builds(
                RawSample,
                key=st.just(key),
                value=st.none() | st.floats(allow_nan=True, allow_infinity=True),
                quality=st.sampled_from(DriverQuality),
                t_wall=st.just(wall),
                t_mono=st.just(T_MONO),
                error=st.none() | st.sampled_from(["timeout: no reply", "modbus exception 2"]),
                flags=st.sampled_from([(), ("held",)]),
            )
        )
    return ReadColumns(keys, tuple(values), tuple(walls), (T_MONO,) * len(keys), others)


def _bits(readings: list[Reading]) -> list[tuple[Reading, str]]:
    return [(r, repr(r.value)) for r in readings]  # repr: -0.0 is not 0.0 on the wire


@given(columns=columnar_reads(), synced=st.booleans(), scale=finite_factors)
def test_a_columnar_read_normalizes_as_its_samples(
    columns: ReadColumns, synced: bool, scale: float
) -> None:
    points = {code: replace(point, scale=scale) for code, point in POINTS.items()}
    prepared = {
        code: PointNormalizer.of(point, indicator(point.quota)) for code, point in points.items()
    }
    lined_up = [prepared.get(key) for key in columns.keys]
    want = normalize_read(columns.samples(), prepared, clock_synced=synced)
    got = normalize_columns(columns, lined_up, clock_synced=synced)
    assert _bits(got) == _bits(want)
