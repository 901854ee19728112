"""`collector db upgrade` on a SQLite file: the steps opening it applies, with versions shown."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite

from collector.storage.base import StorageError
from collector.storage.sqlite.connection import open_database
from collector.storage.sqlite.schema import migrate


async def upgrade(path: Path) -> tuple[int, int]:
    """Bring the file at `path` to this code's schema; (version before, version after).

    A missing file is created with the whole schema (before = 0).
    """
    db = await open_database(path)
    try:
        before = await _version(db)
        await migrate(db)
        return before, await _version(db)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot upgrade database {path}: {exc}") from exc
    finally:
        await db.close()


async def _version(db: aiosqlite.Connection) -> int:
    rows = await db.execute_fetchall("PRAGMA user_version")
    return int(next(iter(rows))[0])
