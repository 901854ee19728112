"""The seq mark's record (`<outbox>.seq`, `edge_agent.shell.outbox_seq_mark`): its fields.

One fixed-size ASCII line: `<epoch> <seq> <count> <t_from> <t_to> <crc32>`, the last the CRC32
(hex) of the five before it, so that one damaged digit is not read as another seq or tally.
A line of the five alone was written before the checksum (an upgraded site's mark): read as
it is. Anything else is damaged (`Damaged`): a start takes it as no mark.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Final

from edge_agent.core.losses import LostReadings

MARK_BYTES: Final = 160
_FIELDS: Final = 5  # and the checksum after them


@dataclass(frozen=True, slots=True)
class Mark:
    """The highest seq sealed in an epoch, as last noted beside the file.

    `unsealed` counts the readings a stop on a full disk had to let go (the next start names
    them in a gap record).
    """

    epoch: str
    seq: int
    unsealed: LostReadings


@dataclass(frozen=True, slots=True)
class Damaged:
    """A record that is not a mark, or whose checksum does not match its fields."""

    why: str


def _time_field(value: float | None) -> str:
    return "-" if value is None else repr(value)


def _parse_time(text: str) -> float | None:
    return None if text == "-" else float(text)


def _checksum(fields: str) -> str:
    return f"{zlib.crc32(fields.encode('ascii')):08x}"


def mark_record(epoch: str, seq: int, unsealed: LostReadings) -> bytes:
    """The record of a mark, checksummed, padded to MARK_BYTES."""
    text = (
        f"{epoch} {seq} {unsealed.count} {_time_field(unsealed.t_from)}"
        f" {_time_field(unsealed.t_to)}"
    )
    return f"{text} {_checksum(text)}".encode("ascii").ljust(MARK_BYTES)


def read_record(record: bytes) -> Mark | Damaged | None:
    """The mark a record holds; None when empty (the file made, never written)."""
    try:
        fields = record[:MARK_BYTES].decode("ascii").split()
    except UnicodeDecodeError:
        return Damaged("not ASCII")
    if not fields:
        return None
    if len(fields) == _FIELDS + 1:
        *fields, noted = fields
        if _checksum(" ".join(fields)) != noted:
            return Damaged("checksum does not match")
    try:
        epoch, seq, count, t_from, t_to = fields
        return Mark(
            epoch, int(seq), LostReadings(int(count), _parse_time(t_from), _parse_time(t_to))
        )
    except ValueError:
        return Damaged("not a mark")
