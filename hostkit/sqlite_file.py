"""What an SQLite file already holds, read before a program makes it its own database.

The outbox and the collector's SQLite storage both take a missing or empty file for a new one
and create their tables in it; a file holding some other program's tables must be refused
instead, with nothing written in it.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_NAMED_AT_MOST: Final = 5


@dataclass(frozen=True, slots=True)
class Holding:
    """The tables of a database (SQLite's own left out) and its `PRAGMA user_version`."""

    tables: frozenset[str]
    user_version: int


def table_names(db: sqlite3.Connection) -> frozenset[str]:
    """The tables of the database, SQLite's own (`sqlite_sequence`, `sqlite_stat1`) left out."""
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return frozenset(str(row[0]) for row in rows if not str(row[0]).startswith("sqlite_"))


def holding(path: Path) -> Holding | None:
    """What the database at `path` holds, opened read-only.

    None when there is nothing SQLite can tell of: no file, 0 bytes, not a database, a lock
    held past a second, a file this user may not read. The program opening it then meets
    (and names) the cause itself.
    """
    if not path.is_file() or path.stat().st_size == 0:
        return None
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=1.0)) as db:
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            return Holding(table_names(db), version)
    except sqlite3.Error:
        return None


def named_tables(tables: frozenset[str]) -> str:
    """`tables` for a message: the first few by name."""
    names = sorted(tables)
    more = ", ..." if len(names) > _NAMED_AT_MOST else ""
    return ", ".join(names[:_NAMED_AT_MOST]) + more
