"""The outbox's write transactions: `BEGIN IMMEDIATE`, then committed whole or rolled back.

Every connection to the outbox runs with `isolation_level=None` (`outbox_open`,
`outbox_admin`): a writer takes the write lock at BEGIN, never by upgrading a read lock
(SQLite answers that with SQLITE_BUSY at once, ignoring the busy timeout). Whatever raises
inside, a cancellation too (one during the wait at BEGIN included), rolls the transaction
back before it goes on, so the connection is never left inside a half-written transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TypeVar

import aiosqlite

_T = TypeVar("_T")


async def on_thread(db: aiosqlite.Connection, function: Callable[..., _T], *args: object) -> _T:
    """`function(connection, *args)` on the connection's thread: one round trip.

    aiosqlite's own way to run a call on that thread (`_execute`, in every release since
    0.17; pinned below 1.0): `execute` does exactly this with `sqlite3.Connection.execute`.
    """
    return await db._execute(lambda: function(db._conn, *args))  # type: ignore[no-untyped-call,no-any-return]  # noqa: SLF001


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One immediate transaction on a plain sqlite3 connection (or aiosqlite's thread)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.commit()
    except BaseException:
        db.rollback()
        raise


@asynccontextmanager
async def async_write_transaction(db: aiosqlite.Connection) -> AsyncIterator[None]:
    """One immediate transaction on the outbox's aiosqlite connection."""
    try:
        # Inside the try: a task cancelled while BEGIN waits for the lock has not stopped it
        # (aiosqlite runs it on its thread all the same); the rollback, queued behind it on
        # that thread, ends what it began. A rollback with no transaction does nothing.
        await db.execute("BEGIN IMMEDIATE")
        yield
        await db.commit()
    except BaseException:
        await db.rollback()
        raise
