"""Damage one outbox row where the file holds it: its record header, or bytes of its columns.

A hostile tester's fuzz of the outbox (tests/integration/test_outbox_fuzz.py): the row's
SQLite record (header of serial types, then the column values) is rebuilt from what the row
holds, found in the file (it must be there once, in one page: small blocks), and bytes in it
are changed as a bad flash sector or a torn write would: a bit of a serial type (a column's
type or length, so the columns after it are read from other bytes), or bytes inside a
column's value. The table's indexes are left as they were, as damage leaves them.
"""

from __future__ import annotations

import random
import sqlite3
import struct
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# The blocks table's columns in the order the row stores them (outbox_schema).
COLUMNS: Final = (
    "epoch",
    "seq",
    "payload",
    "digest",
    "alg",
    "kid",
    "sig",
    "records",
    "sealed_at",
    "delivered_at",
    "readings",
    "thinned",
    "backfilled",
    "first_t",
    "last_t",
)
_REAL: Final = frozenset({"sealed_at", "delivered_at", "first_t", "last_t"})
_INT_SIZES: Final = ((1, 1), (2, 2), (3, 3), (4, 4), (5, 6), (6, 8))


def _varint(value: int) -> bytes:
    """SQLite's variable-length integer (values below 2**56 here)."""
    groups = [value & 0x7F]
    value >>= 7
    while value:
        groups.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(groups))


def _serial(value: object, real: bool) -> tuple[int, bytes]:
    """A value's serial type and body, as SQLite (file format 4) writes it."""
    if value is None:
        return 0, b""
    if isinstance(value, float):
        if real and value.is_integer() and abs(value) < 2**47:
            value = int(value)  # REAL affinity: an integral value is stored as an integer
        else:
            return 7, struct.pack(">d", value)
    if isinstance(value, int):
        if value in {0, 1}:
            return 8 + value, b""
        for kind, size in _INT_SIZES:
            if -(1 << (8 * size - 1)) <= value < (1 << (8 * size - 1)):
                return kind, value.to_bytes(size, "big", signed=True)
    if isinstance(value, str):
        data = value.encode()
        return 13 + 2 * len(data), data
    assert isinstance(value, bytes), value
    return 12 + 2 * len(value), value


@dataclass(frozen=True, slots=True)
class RowBytes:
    """Where block `seq`'s record lies in the file: its header, and each column's value."""

    seq: int
    start: int  # offset of the record (its header size) in the file
    header: tuple[int, int]  # offset, length of the serial types (after the header size)
    types: dict[str, int]  # column: offset of its serial type
    values: dict[str, tuple[int, int]]  # column: offset, length of its value


def locate_row(path: Path, seq: int) -> RowBytes:
    """Block `seq`'s record in the file, after a checkpoint (the next open reads the file)."""
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        row = db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM blocks WHERE seq = ?", (seq,)
        ).fetchone()
    serials = [_serial(value, column in _REAL) for column, value in zip(COLUMNS, row, strict=True)]
    encoded = b"".join(_varint(kind) for kind, _ in serials)
    size = len(encoded) + 1
    if len(_varint(size)) > 1:
        size += 1
    head = _varint(size) + encoded
    record = head + b"".join(body for _, body in serials)
    content = path.read_bytes()
    assert content.count(record) == 1, f"block {seq}'s record is not found once in the file"
    start = content.find(record)
    header_size = len(_varint(size))
    types: dict[str, int] = {}
    values: dict[str, tuple[int, int]] = {}
    at, typed = start + len(head), start + header_size
    for column, (kind, body) in zip(COLUMNS, serials, strict=True):
        types[column] = typed
        typed += len(_varint(kind))
        values[column] = (at, len(body))
        at += len(body)
    return RowBytes(seq, start, (start + header_size, len(head) - header_size), types, values)


def write_at(path: Path, offset: int, data: bytes) -> None:
    """Overwrite the file's bytes at `offset` with `data`."""
    with path.open("r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def flip_header_bit(path: Path, row: RowBytes, rng: random.Random) -> str:
    """Flip one bit of one of the row's serial types; what was done, in words."""
    offset, length = row.header
    at = offset + rng.randrange(length)
    bit = 1 << rng.randrange(8)
    (old,) = path.read_bytes()[at : at + 1]
    write_at(path, at, bytes([old ^ bit]))
    return f"seq {row.seq}: header byte {at - offset} {old:#04x}->{old ^ bit:#04x}"


def mark_delivered_in_header(path: Path, row: RowBytes, value: int) -> str:
    """Turn the row's `delivered_at` NULL into the integer `value` (0 or 1) in its header.

    Serial types 0 (NULL), 8 (0) and 9 (1) take no bytes of the row's body: one or two bits
    of the header make an undelivered block read as delivered, the row otherwise intact.
    """
    at = row.types["delivered_at"]
    (old,) = path.read_bytes()[at : at + 1]
    assert old == 0, f"block {row.seq} is delivered already"
    write_at(path, at, bytes([8 + value]))
    return f"seq {row.seq}: delivered_at NULL -> {value} in the header"


def damage_value(path: Path, row: RowBytes, column: str, rng: random.Random) -> str:
    """Overwrite 1-8 bytes inside `column`'s value with erased flash, zeros or noise."""
    offset, length = row.values[column]
    if length == 0:
        return f"seq {row.seq}: {column} holds no bytes"
    count = min(length, rng.randint(1, 8))
    at = offset + rng.randrange(length - count + 1)
    fill = rng.choice([b"\xff" * count, bytes(count), rng.randbytes(count)])
    write_at(path, at, fill)
    return f"seq {row.seq}: {column} bytes {at - offset}..{at - offset + count - 1} = {fill.hex()}"


def quick_check(path: Path) -> str:
    """`PRAGMA quick_check` of the file ("ok" when SQLite finds its structure sound)."""
    with closing(sqlite3.connect(path)) as db:
        return "; ".join(str(row[0]) for row in db.execute("PRAGMA quick_check"))
