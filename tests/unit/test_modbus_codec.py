"""Register codec: exact byte patterns for every type and order, round trips, and robustness."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.base import DecodeError
from drivers.modbus.codec import DataType, Order, decode, encode, register_count

B, L = Order.BIG, Order.LITTLE
ORDERS = [(B, B), (B, L), (L, B), (L, L)]

# (type, value, {(byte_order, word_order): registers}); the big/big column is the value's
# big-endian IEEE/two's-complement bytes, the others are those bytes rearranged by hand.
TABLE: list[tuple[DataType, float, dict[tuple[Order, Order], tuple[int, ...]]]] = [
    (
        DataType.INT16,
        -12345,
        {(B, B): (0xCFC7,), (B, L): (0xCFC7,), (L, B): (0xC7CF,), (L, L): (0xC7CF,)},
    ),
    (
        DataType.UINT16,
        54321,
        {(B, B): (0xD431,), (B, L): (0xD431,), (L, B): (0x31D4,), (L, L): (0x31D4,)},
    ),
    (
        DataType.INT32,
        -123456789,
        {
            (B, B): (0xF8A4, 0x32EB),
            (B, L): (0x32EB, 0xF8A4),
            (L, B): (0xA4F8, 0xEB32),
            (L, L): (0xEB32, 0xA4F8),
        },
    ),
    (
        DataType.UINT32,
        3456789012,
        {
            (B, B): (0xCE0A, 0x6A14),
            (B, L): (0x6A14, 0xCE0A),
            (L, B): (0x0ACE, 0x146A),
            (L, L): (0x146A, 0x0ACE),
        },
    ),
    (
        DataType.FLOAT32,
        -1234.5625,
        {
            (B, B): (0xC49A, 0x5200),
            (B, L): (0x5200, 0xC49A),
            (L, B): (0x9AC4, 0x0052),
            (L, L): (0x0052, 0x9AC4),
        },
    ),
    (
        DataType.FLOAT64,
        -9876.54321,
        {
            (B, B): (0xC0C3, 0x4A45, 0x87E7, 0xC06E),
            (B, L): (0xC06E, 0x87E7, 0x4A45, 0xC0C3),
            (L, B): (0xC3C0, 0x454A, 0xE787, 0x6EC0),
            (L, L): (0x6EC0, 0xE787, 0x454A, 0xC3C0),
        },
    ),
]

CASES = [
    pytest.param(dtype, value, bo, wo, regs, id=f"{dtype}-{bo}-{wo}")
    for dtype, value, by_order in TABLE
    for (bo, wo), regs in by_order.items()
]


@pytest.mark.parametrize(("dtype", "value", "byte_order", "word_order", "registers"), CASES)
def test_decode_known_pattern(
    dtype: DataType, value: float, byte_order: Order, word_order: Order, registers: tuple[int, ...]
) -> None:
    assert decode(registers, dtype, byte_order, word_order) == value


@pytest.mark.parametrize(("dtype", "value", "byte_order", "word_order", "registers"), CASES)
def test_encode_known_pattern(
    dtype: DataType, value: float, byte_order: Order, word_order: Order, registers: tuple[int, ...]
) -> None:
    assert encode(value, dtype, byte_order, word_order) == registers


@pytest.mark.parametrize(
    ("byte_order", "word_order", "registers"),
    [
        (B, B, (0x42F6, 0xE979)),
        (B, L, (0xE979, 0x42F6)),
        (L, B, (0xF642, 0x79E9)),
        (L, L, (0x79E9, 0xF642)),
    ],
)
def test_float32_123_456(byte_order: Order, word_order: Order, registers: tuple[int, ...]) -> None:
    # 123.456 is not exact in float32: it decodes to the nearest float32, 123.45600128...
    assert decode(registers, DataType.FLOAT32, byte_order, word_order) == pytest.approx(
        123.456, rel=1e-7
    )
    assert encode(123.456, DataType.FLOAT32, byte_order, word_order) == registers


def test_register_counts() -> None:
    assert [register_count(t) for t in DataType] == [1, 1, 2, 2, 2, 4, 1]


def test_bool_without_bit_is_nonzero() -> None:
    assert decode([0], DataType.BOOL) == 0.0
    assert decode([1], DataType.BOOL) == 1.0
    assert decode([0x8000], DataType.BOOL) == 1.0
    assert decode([True], DataType.BOOL) == 1.0  # a coil reply may carry bools


def test_bool_bit_picks_one_bit_after_byte_order() -> None:
    word = 0xA5C3  # bits 0, 1, 6, 7, 8, 10, 13, 15
    bits = [decode([word], DataType.BOOL, bit=i) for i in range(16)]
    assert bits == [1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 1, 0, 0, 1, 0, 1]
    # Little byte order swaps the bytes first: register 0x0001 then holds bit 8.
    assert decode([0x0001], DataType.BOOL, L, B, bit=8) == 1.0
    assert decode([0x0001], DataType.BOOL, L, B, bit=0) == 0.0
    assert encode(1, DataType.BOOL, bit=3) == (0x0008,)
    assert encode(1, DataType.BOOL, L, B, bit=8) == (0x0001,)
    assert encode(0, DataType.BOOL, bit=15) == (0,)


@pytest.mark.parametrize(
    ("registers", "dtype", "bit"),
    [
        ((), DataType.UINT16, None),
        ((1, 2), DataType.UINT16, None),
        ((1,), DataType.FLOAT32, None),
        ((1, 2, 3), DataType.FLOAT64, None),
        ((0x10000,), DataType.UINT16, None),
        ((-1,), DataType.INT16, None),
        ((0, 70000), DataType.INT32, None),
        ((1,), DataType.BOOL, 16),
        ((1,), DataType.BOOL, -1),
        ((1,), DataType.UINT16, 3),
    ],
)
def test_decode_rejects(registers: tuple[int, ...], dtype: DataType, bit: int | None) -> None:
    with pytest.raises(DecodeError):
        decode(registers, dtype, bit=bit)


def test_decode_rejects_non_integers() -> None:
    with pytest.raises(DecodeError):
        decode([1.5], DataType.UINT16)  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("value", "dtype"),
    [
        (32768, DataType.INT16),
        (-32769, DataType.INT16),
        (-1, DataType.UINT16),
        (65536, DataType.UINT16),
        (2**31, DataType.INT32),
        (2**32, DataType.UINT32),
        (1.5, DataType.INT32),
        (math.nan, DataType.UINT16),
        (math.inf, DataType.INT32),
        (1e39, DataType.FLOAT32),
        (2, DataType.BOOL),
    ],
)
def test_encode_rejects_values_that_do_not_fit(value: float, dtype: DataType) -> None:
    with pytest.raises(ValueError, match=r"."):
        encode(value, dtype)


def test_nan_and_infinity_decode_as_floats() -> None:
    assert math.isnan(decode([0x7FC0, 0], DataType.FLOAT32))
    assert decode([0x7F80, 0], DataType.FLOAT32) == math.inf
    assert decode([0xFFF0, 0, 0, 0], DataType.FLOAT64) == -math.inf


def test_decode_does_not_mutate_its_input() -> None:
    registers = [0x79E9, 0xF642]
    decode(registers, DataType.FLOAT32, L, L)
    assert registers == [0x79E9, 0xF642]


orders = st.sampled_from(ORDERS)
INT_RANGES = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
}


@pytest.mark.parametrize("dtype", list(INT_RANGES))
@given(data=st.data(), order=orders)
def test_integer_round_trip(
    dtype: DataType, data: st.DataObject, order: tuple[Order, Order]
) -> None:
    low, high = INT_RANGES[dtype]
    value = data.draw(st.integers(low, high))
    registers = encode(value, dtype, *order)
    assert len(registers) == register_count(dtype)
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert decode(registers, dtype, *order) == value


@given(value=st.floats(width=32, allow_nan=False), order=orders)
def test_float32_round_trip(value: float, order: tuple[Order, Order]) -> None:
    assert decode(encode(value, DataType.FLOAT32, *order), DataType.FLOAT32, *order) == value


@given(value=st.floats(allow_nan=False), order=orders)
def test_float64_round_trip(value: float, order: tuple[Order, Order]) -> None:
    assert decode(encode(value, DataType.FLOAT64, *order), DataType.FLOAT64, *order) == value


@given(
    value=st.sampled_from([0, 1]),
    bit=st.none() | st.integers(0, 15),
    order=orders,
)
def test_bool_round_trip(value: int, bit: int | None, order: tuple[Order, Order]) -> None:
    assert (
        decode(encode(value, DataType.BOOL, *order, bit=bit), DataType.BOOL, *order, bit) == value
    )


@given(
    registers=st.lists(st.integers(-(2**20), 2**20), max_size=6),
    dtype=st.sampled_from(list(DataType)),
    order=orders,
    bit=st.none() | st.integers(-2, 20),
)
def test_decode_raises_only_decode_error(
    registers: list[int], dtype: DataType, order: tuple[Order, Order], bit: int | None
) -> None:
    before = list(registers)
    try:
        value = decode(registers, dtype, *order, bit)
    except DecodeError:
        pass
    else:
        assert isinstance(value, float)
        assert len(registers) == register_count(dtype)
    assert registers == before
