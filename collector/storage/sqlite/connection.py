"""How the SQLite backend opens its file and runs transactions on a connection.

WAL with synchronous=FULL: an ACK promises the block is stored, and WAL+NORMAL may roll back
the latest commits after a power loss. A file that is another program's database, or that root
would make in another user's folder, is refused before anything is written.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from collector.storage.base import StorageError
from hostkit.ownership import root_among_others_files
from hostkit.signal_mask import MAIN_THREAD_SIGNALS, signals_blocked
from hostkit.sqlite_file import holding, named_tables


def sqlite_path(url: str, base_dir: Path | None = None) -> Path:
    """The database file of a `sqlite:///path` URL; relative paths are under `base_dir`."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise StorageError(f"storage url {url!r} is not sqlite:///path")
    path = Path(url.removeprefix(prefix))
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


async def connect(path: Path) -> aiosqlite.Connection:
    """Open a connection in autocommit mode (transactions are explicit), WAL, synchronous=FULL."""
    # Opened once by sqlite3 first, so that a file that cannot be opened fails here, before
    # aiosqlite starts a thread: aiosqlite 0.22 leaves the thread of a failed connect with its
    # stop queued on a future nobody awaits, and a command ending at once then printed that
    # thread's "Event loop is closed" traceback after its own error.
    sqlite3.connect(path).close()
    # Its worker thread is born blocking the stop signals, which `collector serve` takes in the
    # main thread: the worker outlives close() by a moment, and one it took after the loop had
    # given the signals their default back killed a finished stop with -15 (hostkit.signal_mask).
    # Blocked only while aiosqlite starts it (synchronously, in `__await__`), not across the
    # wait for the file: two connects waiting at once (concurrent snapshots) each restored the
    # mask they found, the second the first's blocked one, and the main thread ignored
    # SIGTERM for good, as did every process it started from then on.
    connecting = aiosqlite.connect(path, isolation_level=None)
    with signals_blocked(MAIN_THREAD_SIGNALS):
        started = connecting.__await__()
    db = await _Finished(started)
    try:
        await db.execute("PRAGMA busy_timeout = 10000")
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = FULL")
        await db.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        await db.close()
        raise
    return db


@dataclass(frozen=True, slots=True)
class _Finished:
    """The rest of a connect whose thread its `__await__` already started, to await."""

    steps: Generator[Any, None, aiosqlite.Connection]

    def __await__(self) -> Generator[Any, None, aiosqlite.Connection]:
        return self.steps


async def open_database(path: Path) -> aiosqlite.Connection:
    """`connect` to the file at `path`, creating its folder; StorageError naming the file."""
    try:
        if (problem := _root_would_make(path) or _another_programs(path)) is not None:
            raise StorageError(f"cannot open database {path}: {problem}")
        path.parent.mkdir(parents=True, exist_ok=True)
        return await connect(path)
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(f"cannot open database {path}: {exc}") from exc


def _another_programs(path: Path) -> str | None:
    """Why the file at `path` is another program's database: tables, and no schema version.

    Every collector sets `user_version` in the transaction that makes its tables, so a file at
    version 0 holding tables is not one: taken for a new file, it would be switched to WAL and
    given the collector's tables among its own. Read-only; nothing is written in it.
    """
    found = holding(path)
    if found is None or found.user_version != 0 or not found.tables:
        return None
    return (
        f"it is not a collector database: it holds other tables ({named_tables(found.tables)})"
        " and no collector schema; it is left as it is: give storage.url a new file"
    )


def _root_would_make(path: Path) -> str | None:
    """Why root may not make the database at `path`: its folder is another user's.

    A database already there is no problem: SQLite gives the `-wal` and `-shm` it makes the
    database's owner, and nothing else is made beside it.
    """
    if path.exists():
        return None
    return root_among_others_files(path.parent)


async def rollback(db: aiosqlite.Connection) -> None:
    """Roll back the open transaction, if any, even when the caller is cancelled."""
    # Shielded: a cancelled caller must still leave the connection usable. Asked of the
    # connection's thread, not judged by `in_transaction` now: a BEGIN whose caller was
    # cancelled while it waited for the lock runs there all the same, and this rollback,
    # queued behind it, ends it. With no transaction open (a failed COMMIT may have ended
    # it already) sqlite3's rollback does nothing.
    await asyncio.shield(db.rollback())


@asynccontextmanager
async def immediate_transaction(db: aiosqlite.Connection) -> AsyncIterator[None]:
    """A `BEGIN IMMEDIATE` transaction: committed when the block ends, rolled back if it raises."""
    try:
        await db.execute("BEGIN IMMEDIATE")  # in the try: see `rollback`
        yield
        await db.execute("COMMIT")
    except BaseException:
        await rollback(db)
        raise
