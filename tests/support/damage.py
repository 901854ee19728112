"""Damage an outbox file as a bad flash sector does: bytes changed inside one block's row."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Final, Literal

Column = Literal["digest", "kid", "sig"]


def zero_inside_payload(path: Path, seq: int) -> None:
    """Write 64 zero bytes in the middle of block `seq`'s payload, in the file itself.

    The WAL is checkpointed first, so the change is in the file the next open reads. The
    file's structure is untouched: it still passes `PRAGMA quick_check`.
    """
    (payload,) = _row(path, seq, "payload")
    middle = payload[len(payload) // 2 :][:256]  # within one page of the file
    _overwrite(path, middle, 64, bytes(64))


# Where in a column its bytes are erased: (offset, bytes), inside the value.
_ERASED: Final = {"digest": (24, 16), "kid": (4, 4), "sig": (24, 16)}
# The column stored right after it in the row, to find the value there and nowhere else.
_FOLLOWED_BY: Final = {"digest": ("alg",), "kid": ("sig",), "sig": ()}


def erase_inside_column(path: Path, seq: int, column: Column) -> None:
    """Write 0xFF bytes (erased flash) inside block `seq`'s `column`, in the file itself.

    The column's bytes are found where the row holds them: a digest followed by the
    algorithm's name (the next block's `prev`, the same text, is followed by other bytes), a
    key id by the signature. 0xFF is no UTF-8: a text column no longer decodes as text.
    """
    around = b"".join(_row(path, seq, column, *_FOLLOWED_BY[column]))
    at, count = _ERASED[column]
    _overwrite(path, around, at, b"\xff" * count)


def _row(path: Path, seq: int, *columns: str) -> list[bytes]:
    """Block `seq`'s `columns` as stored, after a checkpoint (the next open reads the file)."""
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        row = db.execute(
            f"SELECT {', '.join(f'CAST({c} AS BLOB)' for c in columns)} FROM blocks WHERE seq = ?",
            (seq,),
        ).fetchone()
    return [bytes(value) for value in row]


def _overwrite(path: Path, around: bytes, at: int, data: bytes) -> None:
    """Write `data` at offset `at` of the only place in the file that holds `around`."""
    content = path.read_bytes()
    assert content.count(around) == 1, "the bytes to damage are not found once in the file"
    with path.open("r+b") as handle:
        handle.seek(content.find(around) + at)
        handle.write(data)
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA quick_check").fetchall() == [("ok",)]


def change_inside_epoch(path: Path, seq: int, byte: bytes) -> None:
    """Write `byte` inside block `seq`'s epoch column (its 5th character), in the file itself.

    Every row holds the same epoch, so the row's own is found as the bytes just before its
    payload: its epoch (16 hex characters) and its seq (one byte below 128), then the payload.
    """
    epoch, payload = _row(path, seq, "epoch", "payload")
    assert seq < 128
    assert len(epoch) == 16
    _overwrite(path, epoch + bytes([seq]) + payload[:64], 4, byte)
