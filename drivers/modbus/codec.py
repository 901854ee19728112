"""Pure Modbus register codec: registers <-> numbers, for every type and byte/word order.

A register is one 16-bit word as it travels on the wire. Multi-register values are laid out
by two independent choices, because instrument vendors disagree on both:

* ``byte_order`` — the order of the two bytes inside each register (``big``: high byte first,
  as the Modbus standard says);
* ``word_order`` — the order of the registers of one value (``big``: most significant register
  at the lowest address).

float32 123.456 is ``0x42F6 0xE979`` big/big, ``0xE979 0x42F6`` byte big/word little,
``0xF642 0x79E9`` byte little/word big and ``0x79E9 0xF642`` little/little. ``byte_order``
also applies to 16-bit types. ``bool`` is one bit: a coil or discrete input natively, or bit
``0..15`` (0 = least significant) of a holding/input register after its byte order is applied.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.base import DecodeError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "BITS_PER_REGISTER",
    "EXCEPTION_NAMES",
    "MAX_UNIT_ID",
    "REGISTER_MAX",
    "DataType",
    "Order",
    "Table",
    "decode",
    "encode",
    "is_bit_table",
    "register_count",
]

REGISTER_MAX = 0xFFFF
BITS_PER_REGISTER = 16
EXCEPTION_NAMES = {
    1: "ILLEGAL FUNCTION",
    2: "ILLEGAL DATA ADDRESS",
    3: "ILLEGAL DATA VALUE",
    4: "SERVER DEVICE FAILURE",
    5: "ACKNOWLEDGE",
    6: "SERVER DEVICE BUSY",
    8: "MEMORY PARITY ERROR",
    10: "GATEWAY PATH UNAVAILABLE",
    11: "GATEWAY TARGET DEVICE FAILED TO RESPOND",
}
"""The Modbus exception codes a slave may answer with, by name (TCP and RTU alike)."""

MAX_UNIT_ID = 247
"""The highest Modbus slave address: 0 broadcasts (no slave answers), 248..255 are reserved.

The address byte of an RTU frame. A Modbus TCP request's unit identifier is a byte too (0..255,
255 for a device addressed itself), but the site map holds it to these addresses as well: a
gateway in front of serial slaves routes by it to one of them.
"""


class Table(enum.StrEnum):
    """The four Modbus data tables; the values are the site-map spelling."""

    HOLDING = "holding"
    INPUT = "input"
    COIL = "coil"
    DISCRETE = "discrete"


class DataType(enum.StrEnum):
    """Value types a point can have; the values are the site-map spelling."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    BOOL = "bool"


class Order(enum.StrEnum):
    """Byte order inside a register, or register order inside a value."""

    BIG = "big"
    LITTLE = "little"


@dataclass(frozen=True, slots=True)
class _Layout:
    """How one type maps to struct: its format character and register count."""

    fmt: str
    registers: int
    integral: bool


_LAYOUTS: dict[DataType, _Layout] = {
    DataType.INT16: _Layout("h", 1, integral=True),
    DataType.UINT16: _Layout("H", 1, integral=True),
    DataType.INT32: _Layout("i", 2, integral=True),
    DataType.UINT32: _Layout("I", 2, integral=True),
    DataType.FLOAT32: _Layout("f", 2, integral=False),
    DataType.FLOAT64: _Layout("d", 4, integral=False),
    DataType.BOOL: _Layout("H", 1, integral=True),
}


def is_bit_table(table: Table) -> bool:
    """Tell whether a table holds single bits (coils, discrete inputs) rather than registers."""
    return table in {Table.COIL, Table.DISCRETE}


def register_count(dtype: DataType) -> int:
    """Return how many 16-bit registers (or bits, for bit tables) one value of `dtype` takes."""
    return _LAYOUTS[dtype].registers


def _to_bytes(registers: Sequence[int], byte_order: Order, word_order: Order) -> bytes:
    """Arrange wire registers into one big-endian byte string."""
    words = list(registers)
    if word_order is Order.LITTLE:
        words.reverse()
    raw = b"".join(struct.pack(">H", word) for word in words)
    if byte_order is Order.LITTLE:
        raw = b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, len(raw), 2))
    return raw


def _to_registers(raw: bytes, byte_order: Order, word_order: Order) -> tuple[int, ...]:
    """Split a big-endian byte string into wire registers; the inverse of `_to_bytes`."""
    if byte_order is Order.LITTLE:
        raw = b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, len(raw), 2))
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if word_order is Order.LITTLE:
        words.reverse()
    return tuple(words)


def _check_bit(dtype: DataType, bit: int | None) -> None:
    """Reject a bit index that cannot apply."""
    if bit is None:
        return
    if dtype is not DataType.BOOL:
        raise DecodeError(f"a bit index only applies to bool, not {dtype}")
    if not 0 <= bit < BITS_PER_REGISTER:
        raise DecodeError(f"bit index {bit} is outside 0..15")


def decode(
    registers: Sequence[int],
    dtype: DataType,
    byte_order: Order = Order.BIG,
    word_order: Order = Order.BIG,
    bit: int | None = None,
) -> float:
    """Decode wire registers (or one 0/1 bit) into a number.

    NaN and infinities decode as floats: whether they are a fault is the caller's call.

    Raises:
        DecodeError: wrong register count, a register outside 0..65535 or a bad bit index.
    """
    layout = _LAYOUTS[dtype]
    _check_bit(dtype, bit)
    if len(registers) != layout.registers:
        raise DecodeError(f"{dtype} needs {layout.registers} register(s), got {len(registers)}")
    for register in registers:
        if not 0 <= register <= REGISTER_MAX:
            raise DecodeError(f"register value {register!r} is outside 0..65535")
    try:
        (value,) = struct.unpack(">" + layout.fmt, _to_bytes(registers, byte_order, word_order))
    except struct.error as exc:  # a non-integer smuggled past the type hints
        raise DecodeError(f"registers {list(registers)!r} are not 16-bit integers") from exc
    if dtype is DataType.BOOL:
        if bit is not None:
            return float((value >> bit) & 1)
        return 1.0 if value else 0.0
    return float(value)


def encode(
    value: float,
    dtype: DataType,
    byte_order: Order = Order.BIG,
    word_order: Order = Order.BIG,
    bit: int | None = None,
) -> tuple[int, ...]:
    """Encode a number into wire registers; the inverse of `decode`.

    A bool with a bit index encodes to a register with only that bit set (or none).

    Raises:
        ValueError: the value does not fit the type (out of range, not integral, not finite).
    """
    layout = _LAYOUTS[dtype]
    try:
        _check_bit(dtype, bit)
    except DecodeError as exc:
        raise ValueError(str(exc)) from exc
    if dtype is DataType.BOOL:
        if value not in {0, 1}:
            raise ValueError(f"bool takes 0 or 1, not {value!r}")
        packed: int | float = int(value) << (bit or 0)
    elif layout.integral:
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"{dtype} takes an integer, not {value!r}")
        packed = int(value)
    else:
        packed = float(value)
    try:
        raw = struct.pack(">" + layout.fmt, packed)
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"{value!r} does not fit {dtype}") from exc
    return _to_registers(raw, byte_order, word_order)
