"""The outbox's write transactions (edge_agent/shell/outbox_transaction.py) and cancellation.

`BEGIN IMMEDIATE` waits (up to the busy timeout) while another connection holds the write
lock: `edge-agent outbox resend` does, for its one short transaction. aiosqlite runs a
statement on its own thread whether or not the task that asked for it is still waiting, so
a task cancelled during that wait (the agent stopping, say) still begins the transaction
later. The transaction must be rolled back then, or the connection stays inside it and the
next write on it (the last seal at a stop) fails: "cannot start a transaction within a
transaction".
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiosqlite

from edge_agent.shell.outbox_transaction import async_write_transaction


async def _wait_inside(db: aiosqlite.Connection, entered: asyncio.Event) -> None:
    async with async_write_transaction(db):
        entered.set()
        await db.execute("INSERT INTO t VALUES (1)")


async def test_a_transaction_cancelled_while_it_waits_for_the_lock_leaves_no_transaction_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE t (x INTEGER)")
    other = sqlite3.connect(path, isolation_level=None)
    db = await aiosqlite.connect(path, isolation_level=None, timeout=5.0)
    try:
        other.execute("BEGIN IMMEDIATE")  # the write lock, held as a resend holds it
        entered = asyncio.Event()
        waiting = asyncio.create_task(_wait_inside(db, entered))
        await asyncio.sleep(0.2)  # the task now waits in BEGIN IMMEDIATE for the lock
        waiting.cancel()
        await asyncio.sleep(0.05)  # the cancellation reaches the task
        other.execute("COMMIT")  # the lock is free: the pending BEGIN goes through now
        await asyncio.gather(waiting, return_exceptions=True)
        await db.execute("SELECT 1")  # runs after everything queued before it
        assert not entered.is_set()
        assert not db.in_transaction
        async with async_write_transaction(db):  # the next write on the connection
            await db.execute("INSERT INTO t VALUES (2)")
        assert [tuple(row) for row in await db.execute_fetchall("SELECT x FROM t")] == [(2,)]
    finally:
        await db.close()
        other.close()
