"""Damage an outbox file as a bad flash sector does: bytes changed inside one block's payload."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


def zero_inside_payload(path: Path, seq: int) -> None:
    """Write 64 zero bytes in the middle of block `seq`'s payload, in the file itself.

    The WAL is checkpointed first, so the change is in the file the next open reads. The
    file's structure is untouched: it still passes `PRAGMA quick_check`.
    """
    with closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        (payload,) = db.execute("SELECT payload FROM blocks WHERE seq = ?", (seq,)).fetchone()
    middle = bytes(payload)[len(payload) // 2 :][:256]  # within one page of the file
    data = path.read_bytes()
    assert data.count(middle) == 1, "the payload's middle is not found once in the file"
    with path.open("r+b") as handle:
        handle.seek(data.find(middle) + 64)
        handle.write(bytes(64))
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA quick_check").fetchall() == [("ok",)]
