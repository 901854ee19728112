"""ReplyDecoder: a whole reply decoded at once gives exactly the samples point-by-point gives."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from drivers.base import Quality, RawSample
from drivers.modbus.codec import DataType, Order, Table, decode, register_count
from drivers.modbus.plan import UNLIMITED_GAP, RegisterPoint, plan_reads, slice_values
from drivers.modbus.reply import ReplyDecoder

H = Table.HOLDING
T_WALL, T_MONO = 1_780_000_000.25, 42.0


def one_by_one(points: list[RegisterPoint], values: list[int]) -> dict[str, RawSample]:
    """The reference: each point sliced and decoded on its own, as the drivers did."""
    (request,) = plan_reads(points, max_gap=UNLIMITED_GAP)
    sliced = slice_values(request, values)
    return {
        p.key: RawSample(
            p.key,
            decode(sliced[p.key], p.dtype, p.byte_order, p.word_order, p.bit),
            Quality.GOOD,
            T_WALL,
            T_MONO,
            sliced[p.key],
        )
        for p in points
    }


def same(a: RawSample, b: RawSample) -> bool:
    nan = a.value is not None and b.value is not None and math.isnan(a.value)
    return (a.key, a.quality, a.raw, a.error) == (b.key, b.quality, b.raw, b.error) and (
        (nan and math.isnan(b.value or 0.0)) or a.value == b.value
    )


@st.composite
def register_points(draw: st.DrawFn) -> list[RegisterPoint]:
    """Up to 30 points in 120 registers: any type and order, overlaps and bits included."""
    points = []
    for n in range(draw(st.integers(1, 30))):
        dtype = draw(st.sampled_from(DataType))
        start = draw(st.integers(0, 120 - register_count(dtype)))
        bit = draw(st.none() | st.integers(0, 15)) if dtype is DataType.BOOL else None
        points.append(
            RegisterPoint(
                f"p{n}",
                H,
                start,
                dtype,
                draw(st.sampled_from(Order)),
                draw(st.sampled_from(Order)),
                bit,
            )
        )
    return points


@given(register_points(), st.lists(st.integers(0, 0xFFFF), min_size=120, max_size=120))
def test_decoded_at_once_equals_one_by_one(points: list[RegisterPoint], image: list[int]) -> None:
    (request,) = plan_reads(points, max_gap=UNLIMITED_GAP)
    values = image[request.start : request.start + request.count]
    got = ReplyDecoder.for_request(request).decode(values, T_WALL, T_MONO)
    want = one_by_one(points, values)
    assert sorted(s.key for s in got) == sorted(want)
    assert all(same(s, want[s.key]) for s in got)


def test_contiguous_floats_take_the_fast_path_and_keep_their_registers() -> None:
    points = [RegisterPoint(f"f{i}", H, 2 * i, DataType.FLOAT32) for i in range(62)]
    (request,) = plan_reads(points)
    decoder = ReplyDecoder.for_request(request)
    assert not decoder.slow
    values = [0x42F6, 0xE979] * 62
    samples = decoder.decode(values, T_WALL, T_MONO)
    assert [s.key for s in samples] == [p.key for p in points]
    assert {round(s.value or 0.0, 3) for s in samples} == {123.456}
    assert samples[5].raw == (0x42F6, 0xE979)


def test_a_register_out_of_range_makes_only_its_point_bad() -> None:
    points = [RegisterPoint("a", H, 0, DataType.UINT16), RegisterPoint("b", H, 1, DataType.INT16)]
    (request,) = plan_reads(points)
    samples = {s.key: s for s in ReplyDecoder.for_request(request).decode([7, 70_000], 1.0, 2.0)}
    assert samples["a"].value == 7.0
    assert samples["b"].quality is Quality.BAD
    assert samples["b"].error == "register value 70000 is outside 0..65535"


def test_a_short_reply_makes_every_point_bad() -> None:
    points = [RegisterPoint("a", H, 0, DataType.FLOAT32), RegisterPoint("b", H, 2, DataType.UINT16)]
    (request,) = plan_reads(points)
    samples = ReplyDecoder.for_request(request).decode([1, 2], 1.0, 2.0)
    assert {s.quality for s in samples} == {Quality.BAD}
    assert all(s.error == "asked for 3 values at holding 0, got 2" for s in samples)


def test_word_swapped_and_overlapping_points_are_decoded_one_by_one() -> None:
    points = [
        RegisterPoint("big", H, 0, DataType.FLOAT32),
        RegisterPoint("swapped", H, 2, DataType.FLOAT32, word_order=Order.LITTLE),
        RegisterPoint("low-word", H, 1, DataType.UINT16),
        RegisterPoint("bit3", H, 1, DataType.BOOL, bit=3),
    ]
    (request,) = plan_reads(points)
    decoder = ReplyDecoder.for_request(request)
    assert [p.key for p in decoder.slow] == ["bit3", "low-word", "swapped"]
    samples = {s.key: s for s in decoder.decode([0x42F6, 0xE979, 0xE979, 0x42F6], 1.0, 2.0)}
    assert samples["swapped"].value == samples["big"].value
    assert samples["low-word"].value == 0xE979
    assert samples["bit3"].value == 1.0


@given(register_points(), st.lists(st.integers(0, 0xFFFF), min_size=120, max_size=120))
def test_values_from_the_reply_bytes_are_the_samples_values(
    points: list[RegisterPoint], image: list[int]
) -> None:
    # The TCP driver's columnar read: fast points straight from the bytes the device sent,
    # the others decoded one by one from the same bytes.
    (request,) = plan_reads(points, max_gap=UNLIMITED_GAP)
    decoder = ReplyDecoder.for_request(request)
    values = image[request.start : request.start + request.count]
    payload = b"".join(v.to_bytes(2, "big") for v in values)
    assert decoder.registers(payload) == tuple(values)
    want = {s.key: s for s in decoder.decode(values, T_WALL, T_MONO)}
    fast = decoder.fast_values(payload)
    if not decoder.fast:
        assert fast is None
        return
    assert fast is not None
    for (key, _first, _end), number in zip(decoder.fast, fast, strict=True):
        got = RawSample(key, number, Quality.GOOD, T_WALL, T_MONO, want[key].raw)
        assert same(got, want[key])
        assert type(number) is float
        assert repr(number) == repr(want[key].value) or math.isnan(number)
    slow = {s.key: s for s in decoder.slow_samples(payload, T_WALL, T_MONO)}
    assert set(slow) == {p.key for p in decoder.slow}
    assert all(same(slow[key], want[key]) for key in slow)
    assert decoder.fast_values(payload[:-2]) is None
