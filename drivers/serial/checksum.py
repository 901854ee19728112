"""Pure checksums of serial instruments: XOR, LRC and CRC-16/MODBUS.

ASCII instruments append the check value to a line as hexadecimal text after a separator,
NMEA-style: ``H2S=12.3 ppm*5A``. The check covers every byte before the separator. The text
is the check value in upper-case hex, two digits for the 8-bit checks and four for CRC-16,
most significant digit first (so CRC-16/MODBUS of ``123456789`` reads ``4B37``, even though
Modbus RTU sends that CRC low byte first on the wire).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from drivers.base import DecodeError

__all__ = [
    "Checksum",
    "ChecksumSpec",
    "append_checksum",
    "checksum_value",
    "crc16_modbus",
    "lrc8",
    "split_checksum",
    "xor8",
]


def _crc16_table() -> tuple[int, ...]:
    """Build the byte-at-a-time table of the reflected polynomial 0xA001 (0x8005)."""
    table: list[int] = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC16_TABLE = _crc16_table()
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


def crc16_modbus(data: bytes) -> int:
    """Return CRC-16/MODBUS (poly 0x8005 reflected, init 0xFFFF, no final XOR) of `data`."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC16_TABLE[(crc ^ byte) & 0xFF]
    return crc


def xor8(data: bytes) -> int:
    """Return the XOR of every byte (the NMEA 0183 checksum)."""
    value = 0
    for byte in data:
        value ^= byte
    return value


def lrc8(data: bytes) -> int:
    """Return the longitudinal redundancy check: two's complement of the byte sum, mod 256.

    This is the Modbus ASCII LRC; adding it to the byte sum gives 0 modulo 256.
    """
    return -sum(data) & 0xFF


class Checksum(enum.StrEnum):
    """Check algorithms a serial device can use; the values are the site-map spelling."""

    XOR = "xor"
    LRC = "lrc"
    CRC16_MODBUS = "crc16_modbus"

    @property
    def hex_digits(self) -> int:
        """Return how many hex digits the check value takes in a line."""
        return 4 if self is Checksum.CRC16_MODBUS else 2


def checksum_value(kind: Checksum, data: bytes) -> int:
    """Compute the check value of `data` with algorithm `kind`."""
    if kind is Checksum.XOR:
        return xor8(data)
    if kind is Checksum.LRC:
        return lrc8(data)
    return crc16_modbus(data)


@dataclass(frozen=True, slots=True)
class ChecksumSpec:
    """Where and how a line carries its check value: ``payload + separator + HEX``.

    Raises:
        ValueError: (on construction) an empty separator.
    """

    kind: Checksum
    separator: bytes = b"*"

    def __post_init__(self) -> None:
        if not self.separator:
            raise ValueError("a checksum separator cannot be empty")


def append_checksum(payload: bytes, spec: ChecksumSpec) -> bytes:
    """Return `payload` followed by the separator and its check value in hex."""
    value = checksum_value(spec.kind, payload)
    return payload + spec.separator + f"{value:0{spec.kind.hex_digits}X}".encode("ascii")


def split_checksum(frame: bytes, spec: ChecksumSpec) -> bytes:
    """Verify a frame's trailing check value and return the payload it covers.

    The last separator in the frame starts the check value, so the payload itself may contain
    the separator. Hex digits are accepted in either case; surrounding blanks are not.

    Raises:
        DecodeError: no separator, a check value that is not hex of the right width, or a
            value that does not match the payload.
    """
    cut = frame.rfind(spec.separator)
    if cut < 0:
        raise DecodeError(f"no {spec.kind} checksum: separator {spec.separator!r} missing")
    payload, text = frame[:cut], frame[cut + len(spec.separator) :]
    digits = spec.kind.hex_digits
    # int(..., 16) alone would also take "+1", " 1" and "1_F".
    if len(text) != digits or not all(byte in _HEX_DIGITS for byte in text):
        raise DecodeError(f"{spec.kind} checksum {text[:16]!r} is not {digits} hex digits")
    received = int(text, 16)
    expected = checksum_value(spec.kind, payload)
    if received != expected:
        raise DecodeError(
            f"{spec.kind} checksum mismatch: line says {received:0{digits}X}, "
            f"payload gives {expected:0{digits}X}"
        )
    return payload
