"""SQLite's snapshot reads (`audit_head`) share the one reader connection with every other read.

Real SQLite file, real concurrent calls through the store. The defect: `_snapshot` ran a plain
`BEGIN` on the reader connection every read shares, with nothing keeping the other reads out
of it. A second snapshot meanwhile failed ("cannot start a transaction within a transaction"),
any read queued meanwhile ran inside the snapshot (a token revoked after it opened still read
as active), and a snapshot cancelled while its `BEGIN` waited left the connection in that
transaction for good: every later snapshot failed and every later read saw the old state.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from collector.storage.sqlite.store import SqliteStorage
from collector.tokens import StoredToken, secret_hash

CONCURRENT = 20


def _token(number: int) -> tuple[StoredToken, str]:
    return StoredToken(f"t{number}", ("*",), created_at=float(number)), secret_hash(f"s{number}")


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    opened = await SqliteStorage.open(tmp_path / "collector.db")
    try:
        yield opened
    finally:
        await opened.close()


async def test_concurrent_snapshots_beside_reads_and_writes_all_answer(
    storage: SqliteStorage,
) -> None:
    await storage.add_token(*_token(0), "test")
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    heads = [storage.audit_head() for _ in range(CONCURRENT)]
    writes = [storage.add_token(*_token(n), "test") for n in range(1, CONCURRENT + 1)]
    checks = [storage.token_by_hash(secret_hash("s0")) for _ in range(CONCURRENT)]
    results = await asyncio.gather(*heads, *writes, *checks, return_exceptions=True)
    failed = [repr(r) for r in results if isinstance(r, BaseException)]
    assert failed == [], f"{len(failed)} of {len(results)} calls failed: {failed[:2]}"
    # Each token added is one sealed action row: the head after them all counts every one.
    head, open_rows = await storage.audit_head()
    assert head is not None
    assert (head.head_seq, open_rows) == (CONCURRENT + 1, 0)
    # Each snapshot's connection starts a thread blocking the stop signals: the main thread's
    # mask is as it was (once left blocking SIGTERM, the process and its children ignored it).
    assert signal.pthread_sigmask(signal.SIG_BLOCK, ()) == mask


async def test_a_read_while_a_snapshot_is_open_sees_what_committed_after_it_opened(
    storage: SqliteStorage,
) -> None:
    token, digest = _token(1)
    await storage.add_token(token, digest, "test")
    opened, revoked = asyncio.Event(), asyncio.Event()

    async def hold_a_snapshot() -> None:
        async with storage._snapshot("holding a snapshot") as db:
            await db.execute_fetchall("SELECT count(*) FROM api_tokens")  # the read mark
            opened.set()
            await revoked.wait()

    async def revoke_then_check() -> StoredToken | None:
        await opened.wait()
        assert await storage.revoke_token(token.name, at=5.0, actor="test")
        revoked.set()
        # Asked before the snapshot's task runs again: before the fix, queued inside it.
        return await storage.token_by_hash(digest)

    _, seen = await asyncio.gather(hold_a_snapshot(), revoke_then_check())
    assert seen is not None
    assert seen.revoked_at == 5.0  # not the snapshot's active token


async def test_a_snapshot_cancelled_while_it_begins_leaves_no_transaction_behind(
    storage: SqliteStorage,
) -> None:
    cancelled = asyncio.create_task(storage.audit_head())
    await asyncio.sleep(0)  # its BEGIN is queued on the connection's thread
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert cancelled.cancelled()
    await storage.add_token(*_token(1), "test")
    head, _ = await storage.audit_head()  # a new snapshot, of the state after the add
    assert head is not None
    assert head.head_seq == 1
    assert await storage.token_by_hash(secret_hash("s1")) is not None


async def test_a_snapshot_cancelled_while_it_reads_closes_its_connection(
    storage: SqliteStorage,
) -> None:
    await storage.add_token(*_token(1), "test")
    holding = asyncio.Event()

    async def hold_a_snapshot() -> None:
        async with storage._snapshot("holding a snapshot") as db:
            await db.execute_fetchall("SELECT count(*) FROM api_tokens")  # the read mark
            holding.set()
            await asyncio.Event().wait()

    held = asyncio.create_task(hold_a_snapshot())
    await holding.wait()
    held.cancel()
    await asyncio.gather(held, return_exceptions=True)
    # A snapshot left open keeps its read mark: the WAL could not be checkpointed past it.
    [(busy, _, _)] = await storage._writer.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
    assert busy == 0


async def test_a_token_check_and_a_ping_are_not_kept_waiting_by_a_long_read(
    storage: SqliteStorage,
) -> None:
    """A read of many statements (a `?every=` bucket page) holds the reader between them.

    Before, a lock held for a read's whole duration kept every token check and /healthz's
    ping waiting for the whole page; the reader runs one statement at a time, so they may
    run between the page's statements, as they did before that lock.
    """
    await storage.add_token(*_token(1), "test")
    between, go_on = asyncio.Event(), asyncio.Event()
    ended: list[str] = []

    async def long_read() -> None:
        async with storage._connection("a long read") as db:
            await db.execute_fetchall("SELECT count(*) FROM api_tokens")
            between.set()  # Python work between statements, as a bucket page's decoding
            await go_on.wait()
            await db.execute_fetchall("SELECT count(*) FROM api_tokens")
        ended.append("long read")

    async def check_and_ping() -> None:
        assert await storage.token_by_hash(secret_hash("s1")) is not None
        await storage.ping()
        ended.append("token check and ping")

    reading = asyncio.create_task(long_read())
    await between.wait()
    checking = asyncio.create_task(check_and_ping())
    # The bound only ends the wait where the check is kept out (it would wait for good):
    # where it is not, it answers at once.
    await asyncio.wait({checking}, timeout=5)
    go_on.set()
    await asyncio.gather(reading, checking)
    assert ended == ["token check and ping", "long read"]
