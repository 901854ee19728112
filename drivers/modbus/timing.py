"""Pure Modbus RTU timing model: how long transactions take and how busy a bus is.

One read transaction is the request frame, the silent interval that ends it, the slave's
turnaround, the response frame and the silent interval that ends that::

    t = (request bytes + response bytes) * char time + 2 * t3.5 + turnaround

A character takes start + data + parity + stop bits (`SerialSettings.char_seconds` of the
line: 11 for the 8E1 or 8N2 lines the Modbus serial-line spec prescribes, 10 for the common
8N1). The silent interval t3.5 is 3.5 spec
characters of 11 bits up to 19,200 baud and a fixed 1.75 ms above it. The model uses 11 bits
for t3.5 even on an 8N1 line: a silence longer than needed costs a fraction of a millisecond,
one shorter than a slave expects merges two frames into garbage.

Frames of read requests (function codes 1-4): the request is 8 bytes (address, function, start,
quantity, CRC); the response 5 + n bytes (address, function, byte count, n data bytes, CRC),
n = 2 per register or 1 per 8 bits. At 9,600 baud 8E1 ten registers take 45.8 ms, so such a
bus carries at most about 22 small transactions per second whatever the CPU.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drivers.modbus.codec import is_bit_table

if TYPE_CHECKING:
    from collections.abc import Sequence

    from drivers.modbus.plan import ReadRequest
    from drivers.serial.settings import SerialSettings

__all__ = [
    "DEFAULT_TURNAROUND",
    "EXCEPTION_RESPONSE_BYTES",
    "FAST_BAUDRATE",
    "FIXED_SILENCE",
    "READ_REQUEST_BYTES",
    "RESPONSE_OVERHEAD_BYTES",
    "bus_utilization",
    "response_frame_bytes",
    "rtu_timeout_seconds",
    "rtu_transaction_seconds",
    "rtu_wire_bytes",
    "silent_interval",
]

READ_REQUEST_BYTES = 8
RESPONSE_OVERHEAD_BYTES = 5  # address, function, byte count, 2 CRC
EXCEPTION_RESPONSE_BYTES = 5  # address, function | 0x80, code, 2 CRC
SPEC_CHAR_BITS = 11
SILENT_CHARS = 3.5
FAST_BAUDRATE = 19200  # above this rate t3.5 is fixed
FIXED_SILENCE = 0.00175
DEFAULT_TURNAROUND = 0.005  # an assumption: instruments typically answer within 1-20 ms


def silent_interval(baudrate: int) -> float:
    """Return t3.5, the silence that ends a frame: 3.5 characters, or 1.75 ms above 19,200.

    Raises:
        ValueError: a baud rate that is not positive.
    """
    if baudrate <= 0:
        raise ValueError(f"baudrate must be > 0, not {baudrate}")
    if baudrate > FAST_BAUDRATE:
        return FIXED_SILENCE
    return SILENT_CHARS * SPEC_CHAR_BITS / baudrate


def response_frame_bytes(request: ReadRequest) -> int:
    """Return the size of a normal response to a read request."""
    data = (request.count + 7) // 8 if is_bit_table(request.table) else 2 * request.count
    return RESPONSE_OVERHEAD_BYTES + data


def rtu_wire_bytes(request: ReadRequest) -> int:
    """Return the bytes one normal read transaction puts on the line: request and reply."""
    return READ_REQUEST_BYTES + response_frame_bytes(request)


def rtu_transaction_seconds(
    request: ReadRequest, line: SerialSettings, *, turnaround: float = DEFAULT_TURNAROUND
) -> float:
    """Return the bus time one read transaction takes on `line` when the slave answers normally.

    Raises:
        ValueError: a negative turnaround.
    """
    if turnaround < 0:
        raise ValueError(f"turnaround must be >= 0, not {turnaround}")
    return (
        rtu_wire_bytes(request) * line.char_seconds
        + 2 * silent_interval(line.baudrate)
        + turnaround
    )


def rtu_timeout_seconds(timeout: float, line: SerialSettings) -> float:
    """Return the bus time a request costs when the slave stays silent until `timeout`.

    The timeout runs from the moment the request is queued, so the request's own time on the
    wire is inside it; the silent interval after it is not.

    Raises:
        ValueError: a timeout that is not positive.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0, not {timeout}")
    return timeout + silent_interval(line.baudrate)


def bus_utilization(
    plans: Sequence[Sequence[ReadRequest]],
    poll_intervals: Sequence[float],
    line: SerialSettings,
    *,
    turnaround: float = DEFAULT_TURNAROUND,
) -> float:
    """Return the fraction of a bus's time that polling these devices needs.

    `plans[i]` is device i's read plan, polled every `poll_intervals[i]` seconds. Above 1.0
    the bus cannot keep the configured cadence at all; above about 0.7 one silent slave's
    timeouts are enough to make the others late.

    Raises:
        ValueError: the two sequences differ in length, or an interval is not positive.
    """
    if len(plans) != len(poll_intervals):
        raise ValueError(f"{len(plans)} plans but {len(poll_intervals)} poll intervals")
    total = 0.0
    for plan, interval in zip(plans, poll_intervals, strict=True):
        if interval <= 0:
            raise ValueError(f"poll interval must be > 0, not {interval}")
        cycle = sum(
            rtu_transaction_seconds(request, line, turnaround=turnaround) for request in plan
        )
        total += cycle / interval
    return total
