"""Which byte/word order makes a multi-register point plausible? Pure ranking for `probe`.

A wrong word order is the commonest commissioning mistake on Modbus: a float32 level of
7.25 m read with swapped words comes out as 1.6e-41 or 4.3e+9. Decoding the same raw
registers in all four orders and checking each against the indicator's plausible range
finds the right order in one command.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from drivers.base import DecodeError
from drivers.modbus.codec import DataType, Order, decode, register_count
from specs.catalogue import CatalogueError, Indicator

ORDERS = tuple((byte, word) for byte in Order for word in Order)
# Devices that swap the bytes inside a register are rare; swapped words are common. Between
# two plausible readings, prefer big-endian registers.
_BIG_BYTES_PRIOR = 1.0
# The smallest normal float of each IEEE type: a decoding below it (but for zero) is a
# subnormal, which no instrument sends; swapped words of an ordinary float32 often make one.
_SMALLEST_NORMAL = {DataType.FLOAT32: 1.1754943508222875e-38, DataType.FLOAT64: sys.float_info.min}
# A float32 carries about 7 significant digits, so a non-zero value smaller than this share of
# the indicator's plausible span is below any instrument's resolution: an artefact of decoding.
_RESOLUTION_SHARE = 1e-7


@dataclass(frozen=True, slots=True)
class OrderCandidate:
    """One byte/word order and what it makes of the registers."""

    byte_order: Order
    word_order: Order
    value: float | None
    plausible: bool
    score: float


def _absurd(raw: float, value: float, dtype: DataType, indicator: Indicator) -> bool:
    """A decoding no instrument would send, though it may lie inside the plausible range."""
    if raw != 0 and abs(raw) < _SMALLEST_NORMAL.get(dtype, 0.0):
        return True
    span = indicator.high - indicator.low
    return value != 0 and abs(value) < span * _RESOLUTION_SHARE


def _score(value: float | None, indicator: Indicator, absurd: bool) -> tuple[bool, float]:
    """Plausible first; among those, nearer the middle of the range (in log terms) is likelier."""
    if value is None or not math.isfinite(value):
        return False, -math.inf
    plausible = indicator.plausible(value) and not absurd
    span = max(abs(indicator.low), abs(indicator.high), 1e-9)
    magnitude = abs(math.log10(max(abs(value), 1e-30) / span))
    return plausible, (1000.0 if plausible else 0.0) - magnitude


def rank_orders(
    registers: tuple[int, ...],
    dtype: DataType,
    *,
    scale: float,
    offset: float,
    unit: str,
    indicator: Indicator,
) -> list[OrderCandidate]:
    """Decode `registers` in every byte/word order and rank the results, likeliest first."""
    if len(registers) != register_count(dtype):
        return []
    candidates = []
    for byte_order, word_order in ORDERS:
        absurd = False
        try:
            raw = decode(registers, dtype, byte_order, word_order)
            value: float | None = indicator.to_canonical(raw * scale + offset, unit)
            absurd = value is not None and _absurd(raw, value, dtype, indicator)
        except (DecodeError, CatalogueError, OverflowError):
            value = None
        plausible, score = _score(value, indicator, absurd)
        if byte_order is Order.BIG:
            score += _BIG_BYTES_PRIOR
        candidates.append(OrderCandidate(byte_order, word_order, value, plausible, score))
    return sorted(candidates, key=lambda c: c.score, reverse=True)
