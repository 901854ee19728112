"""A cancelled many-row statement ends, even while the server has stopped reading.

asyncpg 0.32's `executemany` writes its rows under flow control. A cancellation that lands
while it waits for the socket to drain is swallowed (a `return` in the `finally` of its
`bind_execute_many`), and it then waits for a reply the server never sends: the server is
still reading a batch that will not end. The collector's ingest, cancelled by SIGTERM in the
middle of a batch's block insert, so hung for good (and so did the pool's close after it).

Here the server stops reading: another transaction holds a lock the INSERT needs, so the
rows pile up in the socket buffers until the writer is paused. Then the writer is cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Final

import asyncpg
import pytest

from collector.storage.postgres.connection import execute_many, translated

# Far more than loopback's socket buffers hold (a few MiB each way): the writer must pause.
ROWS: Final = 400
ROW_BYTES: Final = 64 * 1024
ENDS_WITHIN: Final = 10.0
INSERT: Final = "INSERT INTO wide VALUES ($1, $2)"


@asynccontextmanager
async def _connected(url: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    db: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(url, timeout=10)
    try:
        yield db
    finally:
        await db.close(timeout=10)


async def _until_waiting_on_a_lock(watcher: asyncpg.Connection[asyncpg.Record], pid: int) -> None:
    """Poll pg_stat_activity: PostgreSQL tells nobody when a backend starts to wait."""
    async with asyncio.timeout(ENDS_WITHIN):
        while (
            await watcher.fetchval(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1", pid
            )
            != "Lock"
        ):
            await asyncio.sleep(0.02)


async def _cancel_behind_a_lock(
    holder: asyncpg.Connection[asyncpg.Record],
    writer: asyncpg.Connection[asyncpg.Record],
    write: Callable[[list[tuple[int, bytes]]], Coroutine[object, object, None]],
) -> asyncio.Task[None]:
    """Run `write(rows)` on `writer` while `holder` locks the table, cancel it, and return its
    task once it ended; fails when it does not end within ENDS_WITHIN."""
    await holder.execute("CREATE TABLE wide (id integer, body bytea)")
    # Prepared (and cached) now: the Parse would otherwise be what waits for the lock.
    await writer.executemany(INSERT, [(-1, b"")])
    rows = [(n, bytes([n % 251]) * ROW_BYTES) for n in range(ROWS)]
    async with holder.transaction():
        await holder.execute("LOCK TABLE wide IN ACCESS EXCLUSIVE MODE")
        writing = asyncio.create_task(write(rows))
        await _until_waiting_on_a_lock(holder, writer.get_server_pid())
        writing.cancel()
        done, _ = await asyncio.wait({writing}, timeout=ENDS_WITHIN)
        assert done, "the cancelled write still waits for the server"
    return writing


async def test_a_cancelled_execute_many_ends_while_the_server_is_not_reading(
    postgres_url: str,
) -> None:
    async with _connected(postgres_url) as holder, _connected(postgres_url) as writer:
        # One executemany is one implicit transaction: its rows commit together or not.
        writing = await _cancel_behind_a_lock(
            holder, writer, lambda rows: execute_many(writer, INSERT, rows)
        )
        with pytest.raises(asyncio.CancelledError):
            await writing
        assert writer.is_closed()  # closed: the server rolls its transaction back
        assert await holder.fetchval("SELECT count(*) FROM wide") == 1


async def test_a_cancelled_write_inside_a_transaction_stays_a_cancellation(
    postgres_url: str,
) -> None:
    """The closed connection makes the transaction's exit raise InterfaceError in place of the
    CancelledError; translated as a driver error it became a StorageError, which the audit
    sealing and retention loops log and retry: a stopping collector never ended."""
    async with _connected(postgres_url) as holder, _connected(postgres_url) as writer:

        async def write(rows: list[tuple[int, bytes]]) -> None:
            with translated("writing", postgres_url):
                async with writer.transaction():
                    await execute_many(writer, INSERT, rows)

        writing = await _cancel_behind_a_lock(holder, writer, write)
        with pytest.raises(asyncio.CancelledError):
            await writing
        assert await holder.fetchval("SELECT count(*) FROM wide") == 1
