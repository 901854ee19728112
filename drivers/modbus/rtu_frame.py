"""The Modbus RTU frame codec, pure: request frames, the CRC check and reply hunting.

A request is the unit address, the PDU and its CRC-16 (low byte first). A reply counts only
when it matches the unit, the function, the byte count and the CRC, or is an exception frame
(function | 0x80) with a valid CRC; `find_reply` hunts for one from every offset of what was
received, so noise and a stale frame from another slave are skipped. The line timing (the
silent interval t3.5, transaction times) is in `drivers.modbus.timing`; the bus that sends
these frames is `drivers.modbus.rtu_bus`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.base import DecodeError, DriverProtocolError
from drivers.modbus.codec import EXCEPTION_NAMES, MAX_UNIT_ID, Table, is_bit_table
from drivers.modbus.timing import EXCEPTION_RESPONSE_BYTES, RESPONSE_OVERHEAD_BYTES
from drivers.serial.checksum import crc16_modbus

if TYPE_CHECKING:
    from drivers.modbus.plan import ReadRequest

__all__ = [
    "EXCEPTION_FLAG",
    "FUNCTION_CODES",
    "GarbledReplyError",
    "ModbusExceptionError",
    "RtuReply",
    "build_read_frame",
    "data_bytes",
    "find_reply",
    "has_valid_crc",
    "reply_values",
    "rtu_frame",
]

FUNCTION_CODES: dict[Table, int] = {
    Table.COIL: 1,
    Table.DISCRETE: 2,
    Table.HOLDING: 3,
    Table.INPUT: 4,
}
EXCEPTION_FLAG = 0x80


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    """Return an RTU frame: the unit address, the PDU and its CRC-16, low byte first."""
    body = bytes([unit]) + pdu
    return body + crc16_modbus(body).to_bytes(2, "little")


def build_read_frame(unit: int, request: ReadRequest) -> bytes:
    """Return the 8-byte RTU frame of a planned read (function 1, 2, 3 or 4).

    Raises:
        ValueError: a unit address outside 1..247.
    """
    if not 1 <= unit <= MAX_UNIT_ID:
        raise ValueError(f"unit id {unit} is outside 1..{MAX_UNIT_ID}")
    function = FUNCTION_CODES[request.table]
    pdu = bytes([function]) + request.start.to_bytes(2, "big") + request.count.to_bytes(2, "big")
    return rtu_frame(unit, pdu)


def data_bytes(request: ReadRequest) -> int:
    """Return how many data bytes a normal reply to `request` carries (TCP and RTU alike)."""
    return (request.count + 7) // 8 if is_bit_table(request.table) else 2 * request.count


@dataclass(frozen=True, slots=True)
class RtuReply:
    """A reply frame with a valid CRC: data bytes, or a Modbus exception code."""

    unit: int
    function: int
    data: bytes = b""
    exception_code: int | None = None


def has_valid_crc(frame: bytes) -> bool:
    """Tell whether a frame's last two bytes are the CRC of the rest."""
    return crc16_modbus(frame[:-2]).to_bytes(2, "little") == frame[-2:]


def find_reply(buffer: bytes, unit: int, request: ReadRequest) -> RtuReply | None:
    """Find the reply to `request` from `unit` in the bytes received since it was sent.

    Hunts from every offset, so noise before the reply and a stale frame from another slave
    are skipped. Only a frame with the right unit, function, byte count and CRC counts, or an
    exception frame (function | 0x80) with a valid CRC. Returns None until one is complete.
    """
    function = FUNCTION_CODES[request.table]
    count = data_bytes(request)
    normal_size = RESPONSE_OVERHEAD_BYTES + count
    for offset in range(len(buffer) - EXCEPTION_RESPONSE_BYTES + 1):
        if buffer[offset] != unit:
            continue
        code = buffer[offset + 1]
        if code == function | EXCEPTION_FLAG:
            frame = buffer[offset : offset + EXCEPTION_RESPONSE_BYTES]
            if has_valid_crc(frame):
                return RtuReply(unit, function, exception_code=frame[2])
        elif code == function and buffer[offset + 2] == count:
            frame = buffer[offset : offset + normal_size]
            if len(frame) == normal_size and has_valid_crc(frame):
                return RtuReply(unit, function, data=frame[3:-2])
    return None


def reply_values(reply: RtuReply, request: ReadRequest) -> tuple[int, ...]:
    """Return the registers (or 0/1 bits) a normal reply carries for `request`.

    Raises:
        DecodeError: the reply has the wrong number of data bytes.
    """
    if len(reply.data) != data_bytes(request):
        raise DecodeError(f"expected {data_bytes(request)} data bytes, got {len(reply.data)}")
    if is_bit_table(request.table):
        return tuple((reply.data[i // 8] >> (i % 8)) & 1 for i in range(request.count))
    return tuple(int.from_bytes(reply.data[i : i + 2], "big") for i in range(0, len(reply.data), 2))


# --------------------------------------------------------------------------------------------
# Errors a bus transaction raises besides timeouts and a lost port


class ModbusExceptionError(DriverProtocolError):
    """The slave answered with a Modbus exception code."""

    def __init__(self, unit: int, code: int) -> None:
        self.code = code
        name = EXCEPTION_NAMES.get(code, "UNKNOWN")
        super().__init__(f"unit {unit}: modbus exception {code} ({name})")


class GarbledReplyError(DriverProtocolError):
    """Bytes came back, but no valid reply before the deadline (noise, bad CRC, wrong size)."""
