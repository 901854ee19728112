"""A SQLite write cancelled while `BEGIN IMMEDIATE` waits for the lock leaves no transaction.

Another connection may hold the file's write lock for a while: retention's prune (its own
connection), a `collector tokens` command, a second collector on the same file. A write of
the serving collector then waits in `BEGIN IMMEDIATE`, on aiosqlite's thread, which runs the
statement whether or not the task that asked for it is still there. A task cancelled during
that wait (its MQTT session ending, a stop) must still end what the BEGIN begins: left open,
every later write on the connection failed ("cannot start a transaction within a
transaction") until the collector was restarted.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from collector.storage import open_storage
from collector.storage.capabilities import TokenStore
from collector.storage.sqlite.connection import connect, immediate_transaction
from collector.tokens import StoredToken, new_secret, secret_hash

NOW = 1_767_225_600.0


async def _cancelled_behind_a_held_lock(path: Path, write: asyncio.Task[object]) -> None:
    """Hold the write lock, let `write` wait for it, cancel it, then let the lock go."""
    other = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    try:
        other.execute("BEGIN IMMEDIATE")
        await asyncio.sleep(0.2)  # `write` now waits in BEGIN IMMEDIATE for the lock
        write.cancel()
        await asyncio.sleep(0.05)  # the cancellation reaches it
        other.execute("COMMIT")  # the lock is free: the pending BEGIN goes through now
    finally:
        other.close()
    await asyncio.gather(write, return_exceptions=True)


def _token(name: str) -> tuple[StoredToken, str]:
    return StoredToken(name, ("*",), NOW), secret_hash(new_secret())


async def test_a_storage_write_cancelled_at_begin_leaves_the_next_write_working(
    tmp_path: Path,
) -> None:
    path = tmp_path / "collector.db"
    async with open_storage(f"sqlite:///{path}") as storage:
        assert isinstance(storage, TokenStore)
        write = asyncio.ensure_future(storage.add_token(*_token("first"), "test"))
        await _cancelled_behind_a_held_lock(path, write)
        await storage.add_token(*_token("second"), "test")
        assert [t.name for t in await storage.api_tokens()] == ["second"]


async def test_an_immediate_transaction_cancelled_at_begin_rolls_back(tmp_path: Path) -> None:
    path = tmp_path / "collector.db"
    db = await connect(path)
    try:
        await db.execute("CREATE TABLE t (x INTEGER)")

        async def insert() -> None:
            async with immediate_transaction(db):
                await db.execute("INSERT INTO t VALUES (1)")

        await _cancelled_behind_a_held_lock(path, asyncio.ensure_future(insert()))
        await db.execute("SELECT 1")  # runs after everything queued before it
        assert not db.in_transaction
    finally:
        await db.close()
