"""Pure: a read request's reply turned into one sample per point, with one struct call.

A planned request covers tens of points (up to 62 float32 in 125 registers). Decoding them one
by one (slice the point's registers, check each, pack them to bytes, unpack) cost about 3 us a
point; here the reply's registers are packed to bytes once (`struct` checks each is 0..65535)
and every big-endian point that does not overlap another is unpacked by one precompiled
`struct.Struct` whose pad bytes skip the gaps. The other points (other byte or word orders,
bools, overlaps) and any reply the fast path refuses go through `codec.decode` one by one, which
also words the errors: both paths give the same samples.

A reply that arrives as bytes (the TCP driver's) skips the registers altogether: `fast_values`
unpacks the fast points straight from the bytes the device sent, the very bytes packing its
registers back would give, for a columnar read (`drivers.base.ReadColumns`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.base import DecodeError, Quality, RawSample
from drivers.modbus.codec import DataType, Order, decode, is_bit_table
from drivers.modbus.plan import ReadRequest, RegisterPoint, slice_values

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["ReplyDecoder"]

_FLOAT_FORMATS = frozenset("fd")
_FAST_FORMATS = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}


def _fast_points(request: ReadRequest) -> tuple[RegisterPoint, ...]:
    """The points one struct can unpack: big/big numbers, none overlapping the one before."""
    if is_bit_table(request.table):
        return ()
    fast: list[RegisterPoint] = []
    end = request.start
    for point in request.points:  # sorted by address (plan_reads)
        if (
            point.dtype in _FAST_FORMATS
            and point.byte_order is Order.BIG
            and point.word_order is Order.BIG
            and point.start >= end
        ):
            fast.append(point)
            end = point.end
    return tuple(fast)


def _fields_format(request: ReadRequest, fast: Sequence[RegisterPoint]) -> str:
    parts = [">"]
    at = request.start
    for point in fast:
        if point.start > at:
            parts.append(f"{2 * (point.start - at)}x")
        parts.append(_FAST_FORMATS[point.dtype])
        at = point.end
    if at < request.start + request.count:
        parts.append(f"{2 * (request.start + request.count - at)}x")
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class ReplyDecoder:
    """How to turn the reply to one planned request into samples, compiled once per plan."""

    request: ReadRequest
    words: struct.Struct  # the reply's registers -> their bytes, each checked 0..65535
    fields: struct.Struct  # the fast points' values out of those bytes
    fast: tuple[tuple[str, int, int], ...]  # (key, first register, end) in `fields` order
    slow: tuple[RegisterPoint, ...]
    floats: bool  # every fast point unpacks to a float already (float32, float64)

    @classmethod
    def for_request(cls, request: ReadRequest) -> ReplyDecoder:
        """Compile the decoder of `request`."""
        fast = _fast_points(request)
        taken = {point.key for point in fast}
        first = request.start
        return cls(
            request=request,
            words=struct.Struct(f">{request.count}H"),
            fields=struct.Struct(_fields_format(request, fast)),
            fast=tuple((p.key, p.start - first, p.end - first) for p in fast),
            slow=tuple(p for p in request.points if p.key not in taken),
            floats=all(_FAST_FORMATS[p.dtype] in _FLOAT_FORMATS for p in fast),
        )

    def registers(self, payload: bytes) -> tuple[int, ...]:
        """The registers of a reply's data bytes (big-endian words; an odd last byte is cut)."""
        return struct.unpack_from(f">{len(payload) // 2}H", payload)

    def fast_values(self, payload: bytes) -> tuple[float, ...] | None:
        """The fast points' values (`fast` order) from a reply's data bytes, or None.

        None when there are no fast points or the reply is not as long as the request: then
        `decode` of its registers says what each point is. Each value is what `decode` gives
        the point's sample (`float` of the unpacked number).
        """
        if not self.fast or len(payload) != 2 * self.request.count:
            return None
        numbers: tuple[float, ...] = self.fields.unpack(payload)
        return numbers if self.floats else tuple(map(float, numbers))

    def slow_samples(self, payload: bytes, t_wall: float, t_mono: float) -> list[RawSample]:
        """The samples of the points `fast_values` leaves out, from a reply as long as asked."""
        if not self.slow:
            return []
        return self._decode_each(self.slow, self.registers(payload), t_wall, t_mono)

    def decode(self, values: Sequence[int], t_wall: float, t_mono: float) -> list[RawSample]:
        """One sample per point of the request (fast points first), from a good reply.

        A point whose registers do not decode is a BAD sample; a reply shorter than the
        request makes every point BAD.
        """
        if not self.fast or len(values) != self.request.count:
            return self._decode_each(self.request.points, values, t_wall, t_mono)
        registers = tuple(values)
        try:
            numbers = self.fields.unpack(self.words.pack(*registers))
        except struct.error:  # a register outside 0..65535 or not an int: say which
            return self._decode_each(self.request.points, values, t_wall, t_mono)
        good = Quality.GOOD
        samples = [
            RawSample(key, float(number), good, t_wall, t_mono, registers[first:end])
            for (key, first, end), number in zip(self.fast, numbers, strict=True)
        ]
        if self.slow:
            samples += self._decode_each(self.slow, values, t_wall, t_mono)
        return samples

    def bad(self, error: str, t_wall: float, t_mono: float) -> list[RawSample]:
        """A BAD sample for every point of a failed request."""
        return [
            RawSample(point.key, None, Quality.BAD, t_wall, t_mono, error=error)
            for point in self.request.points
        ]

    def _decode_each(
        self,
        points: Sequence[RegisterPoint],
        values: Sequence[int],
        t_wall: float,
        t_mono: float,
    ) -> list[RawSample]:
        """Decode `points` one by one (codec.decode words every error)."""
        try:
            sliced = slice_values(self.request, values)
        except DecodeError as exc:
            return self.bad(str(exc), t_wall, t_mono)
        samples: list[RawSample] = []
        for point in points:
            raw = sliced[point.key]
            try:
                value = decode(raw, point.dtype, point.byte_order, point.word_order, point.bit)
            except DecodeError as exc:
                samples.append(
                    RawSample(point.key, None, Quality.BAD, t_wall, t_mono, raw, error=str(exc))
                )
                continue
            samples.append(RawSample(point.key, value, Quality.GOOD, t_wall, t_mono, raw))
        return samples
