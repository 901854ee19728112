"""Pure read planner: the fewest Modbus read requests that cover a device's points.

Points of one table are sorted by address and packed greedily into requests. A request grows
while the next point still fits the protocol limit (125 registers, 2000 bits) and the unused
addresses between it and the request read so far are at most `max_gap`. Reading through a small
gap costs a few bytes; a separate request costs a round trip. Set `max_gap=0` for devices that
answer ILLEGAL ADDRESS when a read touches a hole in their map.

`transaction_lower_bound` is the fewest requests any plan can have: per table, the fewest
windows of at most 125 registers (2000 bits) that each hold whole points, with every gap read
through. With `max_gap=UNLIMITED_GAP` the planner reaches it; a smaller `max_gap` trades extra
requests for not touching holes in the device's map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.base import DecodeError
from drivers.modbus.codec import (
    BITS_PER_REGISTER,
    DataType,
    Order,
    Table,
    is_bit_table,
    register_count,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "DEFAULT_MAX_GAP",
    "MAX_READ_BITS",
    "MAX_READ_REGISTERS",
    "UNLIMITED_GAP",
    "ReadRequest",
    "RegisterPoint",
    "plan_reads",
    "slice_values",
    "transaction_lower_bound",
]

MAX_READ_REGISTERS = 125  # function codes 3 and 4, Modbus application protocol 6.3/6.4
MAX_READ_BITS = 2000  # function codes 1 and 2
DEFAULT_MAX_GAP = 10
ADDRESS_SPACE = 0x10000
UNLIMITED_GAP = ADDRESS_SPACE  # read through any gap: the plan reaches the lower bound


@dataclass(frozen=True, slots=True)
class RegisterPoint:
    """Where one point lives on a device and how its registers decode.

    Raises:
        ValueError: (on construction) an address, type or bit that cannot exist.
    """

    key: str
    table: Table
    start: int
    dtype: DataType
    byte_order: Order = Order.BIG
    word_order: Order = Order.BIG
    bit: int | None = None

    def __post_init__(self) -> None:
        if is_bit_table(self.table):
            if self.dtype is not DataType.BOOL or self.bit is not None:
                raise ValueError(f"{self.key}: a {self.table} point is a bool without a bit")
        elif self.bit is not None and (
            self.dtype is not DataType.BOOL or not 0 <= self.bit < BITS_PER_REGISTER
        ):
            raise ValueError(f"{self.key}: bit {self.bit} needs type bool and 0..15")
        if self.start < 0 or self.end > ADDRESS_SPACE:
            raise ValueError(f"{self.key}: address {self.start} is outside 0..65535")

    @property
    def count(self) -> int:
        """Return how many addresses (registers or bits) the point occupies."""
        return register_count(self.dtype)

    @property
    def end(self) -> int:
        """Return the first address after the point."""
        return self.start + self.count


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """One read of `count` consecutive addresses of `table`, and the points it serves."""

    table: Table
    start: int
    count: int
    points: tuple[RegisterPoint, ...]


def _limit(table: Table) -> int:
    """Return the most addresses one read of `table` may cover."""
    return MAX_READ_BITS if is_bit_table(table) else MAX_READ_REGISTERS


def _plan_table(table: Table, points: Sequence[RegisterPoint], max_gap: int) -> list[ReadRequest]:
    """Pack the points of one table, sorted by address, into requests."""
    requests: list[ReadRequest] = []
    limit = _limit(table)
    group: list[RegisterPoint] = []
    start = end = 0
    for point in sorted(points, key=lambda p: (p.start, p.end, p.key)):
        if group and point.start - end <= max_gap and max(end, point.end) - start <= limit:
            group.append(point)
            end = max(end, point.end)
            continue
        if group:
            requests.append(ReadRequest(table, start, end - start, tuple(group)))
        group = [point]
        start, end = point.start, point.end
    if group:
        requests.append(ReadRequest(table, start, end - start, tuple(group)))
    return requests


def plan_reads(
    points: Iterable[RegisterPoint], *, max_gap: int = DEFAULT_MAX_GAP
) -> tuple[ReadRequest, ...]:
    """Plan the fewest read requests covering every point once, in table then address order.

    Raises:
        ValueError: two points share a key, or `max_gap` is negative.
    """
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, not {max_gap}")
    by_table: dict[Table, list[RegisterPoint]] = {}
    seen: set[str] = set()
    for point in points:
        if point.key in seen:
            raise ValueError(f"duplicate point key {point.key!r}")
        seen.add(point.key)
        by_table.setdefault(point.table, []).append(point)
    requests: list[ReadRequest] = []
    for table in Table:
        requests.extend(_plan_table(table, by_table.get(table, []), max_gap))
    return tuple(requests)


def slice_values(
    request: ReadRequest, response_registers: Sequence[int]
) -> dict[str, tuple[int, ...]]:
    """Cut a response into each point's own registers (or one 0/1 bit), keyed by point key.

    Extra trailing values are ignored: coil and discrete replies are padded to whole bytes.

    Raises:
        DecodeError: the response holds fewer values than the request asked for.
    """
    if len(response_registers) < request.count:
        raise DecodeError(
            f"asked for {request.count} values at {request.table} {request.start}, "
            f"got {len(response_registers)}"
        )
    values: dict[str, tuple[int, ...]] = {}
    for point in request.points:
        first = point.start - request.start
        values[point.key] = tuple(int(v) for v in response_registers[first : first + point.count])
    return values


def transaction_lower_bound(
    points: Iterable[RegisterPoint],
    max_registers: int = MAX_READ_REGISTERS,
    max_bits: int = MAX_READ_BITS,
) -> int:
    """Return the fewest read requests any plan needs for these points.

    Per table: the fewest windows of at most `max_registers` registers (`max_bits` for coils
    and discrete inputs) such that every point lies wholly inside one window, when any gap
    may be read through. Greedy is optimal here: some window must hold the point that starts
    lowest, and the window starting at that point holds every point any such window holds.

    Raises:
        ValueError: a limit below 1, or a point longer than its table's limit.
    """
    if max_registers < 1 or max_bits < 1:
        raise ValueError("limits must be >= 1")
    by_table: dict[Table, list[RegisterPoint]] = {}
    for point in points:
        by_table.setdefault(point.table, []).append(point)
    total = 0
    for table, row in by_table.items():
        limit = max_bits if is_bit_table(table) else max_registers
        if any(point.count > limit for point in row):
            raise ValueError(f"a {table} point is longer than the limit {limit}")
        remaining = sorted(row, key=lambda p: p.start)
        while remaining:
            window_end = remaining[0].start + limit
            total += 1
            # Points are sorted by start, so the left-overs stay sorted.
            remaining = [p for p in remaining if p.end > window_end]
    return total
