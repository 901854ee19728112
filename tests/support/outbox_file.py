"""An agent's outbox file read from outside, read-only: what it has committed so far."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from specs.block import decode_block
from specs.records import Reading, Record


def read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to the outbox file at `path` (a running agent may hold it)."""
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def committed_records(path: Path) -> list[Record]:
    """Every record the outbox at `path` holds, block by block in the order they were stored."""
    with closing(read_only(path)) as db:
        rows = db.execute("SELECT payload FROM blocks ORDER BY rowid").fetchall()
    return [record for (payload,) in rows for record in decode_block(bytes(payload)).records]


def committed_readings(path: Path) -> list[Reading]:
    """Every reading the outbox at `path` holds, whole (flags included), block by block."""
    return [record for record in committed_records(path) if isinstance(record, Reading)]


def sealed_blocks(path: Path) -> int:
    """Blocks the outbox at `path` holds (0 before the file or its tables exist)."""
    if not path.exists():
        return 0
    try:
        with closing(read_only(path)) as db:
            return int(db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0])
    except sqlite3.OperationalError:  # the file exists, its tables not yet
        return 0
