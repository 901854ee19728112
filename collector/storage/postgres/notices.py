"""Commits of every collector on one database, told across processes by LISTEN/NOTIFY.

The ingest transaction that adds to the live feed runs `NOTIFY` on FEED_CHANNEL; PostgreSQL
delivers it only at COMMIT (never for a rolled-back batch), to every session listening then.
`relay_commits` holds one such session, a connection of its own outside the pool (a pooled
one would go back to the pool still listening, and a listener must not wait behind queries),
and rings a `CommitSignal` per notice, so a stream served by one collector wakes when another
collector commits.

The connection may be lost (server restart, network): it is opened again, and the signal is
rung once on each (re)connection, since commits in between were told to nobody. Streams also
re-read the database on their heartbeat, so a lost notice makes an event late, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

import asyncpg
import structlog

from collector.feed.wakeup import CommitSignal
from collector.storage.postgres.connection import DRIVER_ERRORS, Db, describe
from collector.storage.urls import redacted

FEED_CHANNEL: Final = "ganzhi_feed"
"""The channel every collector of a database notifies and listens on."""
RECONNECT_DELAYS: Final = (0.5, 1.0, 2.0, 5.0)
"""Seconds between attempts to open the listening connection again (the last repeats)."""
CONNECT_TIMEOUT: Final = 10.0

log = structlog.get_logger("collector.storage.postgres")


async def announce_commit(db: Db) -> None:
    """Inside a transaction: notify FEED_CHANNEL when (and only if) it commits.

    Notices with one payload in one transaction are folded into one, so a batch tells once.
    """
    await db.execute("SELECT pg_notify($1, '')", FEED_CHANNEL)


async def _listen_once(url: str, signal: CommitSignal, connected: asyncio.Event) -> None:
    """Listen until the connection is lost (returns) or the task is cancelled."""
    lost = asyncio.Event()

    def ring(_db: Db, _pid: int, _channel: str, _payload: object) -> None:
        signal.notify()

    def on_lost(_db: Db) -> None:
        lost.set()

    db: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(
        url,
        timeout=CONNECT_TIMEOUT,
        server_settings={"application_name": "ganzhi-collector-listen"},
    )
    try:
        db.add_termination_listener(on_lost)
        await db.add_listener(FEED_CHANNEL, ring)
        # Commits before LISTEN took effect were told to nobody: streams re-read once.
        signal.notify()
        connected.set()
        await lost.wait()
    finally:
        if not db.is_closed():
            # Cancelled while listening: close without waiting on a server that may be gone.
            db.terminate()


async def _listen(url: str, signal: CommitSignal, connected: asyncio.Event) -> None:
    """Keep a listening connection open until cancelled, opening it again when lost."""
    failures = 0
    while True:
        try:
            await _listen_once(url, signal, connected)
            failures = 0
            log.warning("commit_listener_lost", storage=redacted(url))
        except DRIVER_ERRORS as exc:
            log.warning(
                "commit_listener_failed",
                storage=redacted(url),
                error=describe(exc),
                attempt=failures + 1,
            )
            failures += 1
        await asyncio.sleep(RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)])


@contextlib.asynccontextmanager
async def relay_commits(url: str, signal: CommitSignal) -> AsyncIterator[None]:
    """Ring `signal` for every feed commit on the database at `url`, whoever made it.

    Waits (up to CONNECT_TIMEOUT) for the first LISTEN to take effect, so that a commit made
    after entering is never missed; if the server cannot be reached by then, the relay keeps
    trying in the background and streams fall back on their heartbeat meanwhile.
    """
    connected = asyncio.Event()
    task = asyncio.create_task(_listen(url, signal, connected), name="commit-listener")
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await connected.wait()
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
