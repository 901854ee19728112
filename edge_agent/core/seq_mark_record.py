"""The seq mark's record (`<outbox>.seq`, `edge_agent.shell.outbox_seq_mark`): its fields.

One fixed-size ASCII line: `<epoch> <seq> <count> <t_from> <t_to> <crc32>`, the last the CRC32
(hex) of the five before it, so that one damaged digit is not read as another seq or tally.
A line of the five alone was written before the checksum (an upgraded site's mark): it cannot
vouch for its digits, and is taken unless its tally is none a writer keeps (`unvouched`).
Anything else is damaged (`Damaged`): a start takes it as no mark.
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
    them in a gap record). `checksummed` false: read from a record written before the checksum.
    """

    epoch: str
    seq: int
    unsealed: LostReadings
    checksummed: bool = True


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
    checksummed = len(fields) == _FIELDS + 1
    if checksummed:
        *fields, noted = fields
        if _checksum(" ".join(fields)) != noted:
            return Damaged("checksum does not match")
    try:
        epoch, seq, count, t_from, t_to = fields
        tally = LostReadings(int(count), _parse_time(t_from), _parse_time(t_to))
        return Mark(epoch, int(seq), tally, checksummed)
    except ValueError:
        return Damaged("not a mark")


def _no_tally(tally: LostReadings) -> bool:
    """Whether no tally a writer keeps looks so: a span with one end, backwards, or uncounted."""
    if (tally.t_from is None) != (tally.t_to is None):
        return True
    if tally.t_from is not None and tally.t_to is not None and tally.t_from > tally.t_to:
        return True
    return tally.count < 0 or (tally.count == 0 and tally.t_from is not None)


def unvouched(noted: Mark) -> str | None:
    """Why a mark written before the checksum is a damaged one; None: taken (or checksummed).

    Only a tally no writer keeps tells damage apart. Its seq is taken whatever it says (a start
    can only err safely): below the file's last, it proves nothing (a write the older agent
    gave up while another process held the mark, a kill before it) and its tally is declared;
    above it, a real restore and a damaged digit look alike, and a loss declared that never was
    costs less than seqs sealed twice (`unchecked_rollback`). Of another epoch, it proves
    nothing either (docs/reliability.md).
    """
    if noted.checksummed or not _no_tally(noted.unsealed):
        return None
    return "no checksum, and its tally is not one"


def unchecked_rollback(noted: Mark, file_at: tuple[str, int] | None) -> str | None:
    """What to say of a mark with no checksum that proves `file_at` (epoch, last seq) lost seals.

    None: it proves no rollback (no sound file, another epoch, not above the file's last seq).
    """
    if file_at is None or noted.epoch != file_at[0] or noted.seq <= file_at[1]:
        return None
    epoch, last = file_at
    return (
        f"no checksum, and it says epoch {epoch} sealed through seq {noted.seq}, the file's"
        f" last is {last}: seqs {last + 1} to {noted.seq} are declared lost; if the file was not"
        " restored from a copy, the mark may be damaged and the loss a false alarm (seqs above"
        f" {last} that the collector stored would prove it real)"
    )
