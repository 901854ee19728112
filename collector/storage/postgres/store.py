"""The Storage protocol on PostgreSQL: a small asyncpg pool, many collectors per database.

Each call borrows a pooled connection. `ingest` first makes sure the months its readings need
have partitions (a short transaction of its own), then runs the batch as one transaction that
holds its gateways' advisory locks, and returns only after COMMIT, which PostgreSQL makes
durable before answering (synchronous_commit stays at its default, on). Nothing about ingest
state lives in the process, so any collector can take any gateway's next batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final

import asyncpg
import structlog

from collector.feed.core import JournalEntry
from collector.feed.wakeup import CommitSignal
from collector.model import (
    BatchResult,
    IngestBatch,
)
from collector.readmodel import (
    BucketGrid,
    ReadingFilter,
    Scope,
)
from collector.storage.activations import WriteEntries
from collector.storage.base import BlocksDeferredError, StorageError
from collector.storage.dialect_store import Dialect, DialectStore
from collector.storage.months import Month, month_of, next_month
from collector.storage.postgres import feed, quality, registry, tokens
from collector.storage.postgres.audit import PostgresChain
from collector.storage.postgres.buckets import (
    PostgresBucketQueries,
    PostgresRollupBucketQueries,
)
from collector.storage.postgres.connection import (
    Db,
    check_url,
    connecting,
    translated,
)
from collector.storage.postgres.ingest import ingest_batch, months_needed
from collector.storage.postgres.notices import relay_commits
from collector.storage.postgres.partitions import Partitions, deferral_message, ingest_horizon
from collector.storage.postgres.rows import fetcher
from collector.storage.postgres.schema import migrate
from collector.storage.queries import Fetch
from collector.storage.urls import redacted

POOL_MIN: Final = 1
# Ingest runs one batch at a time per collector; the rest serve the API beside it.
POOL_MAX: Final = 4
CONNECT_TIMEOUT: Final = 10.0
# How long `close` waits for borrowed connections to come back before it ends them.
CLOSE_TIMEOUT: Final = 10.0

log = structlog.get_logger("collector.storage.postgres")


class PostgresStorage(DialectStore[Db]):
    """The Storage protocol on one PostgreSQL database."""

    feed_statements = feed.STATEMENTS
    quality_aggregates = quality.AGGREGATES
    dialect = Dialect(chain=PostgresChain, registry=registry, tokens=tokens)

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], url: str) -> None:
        self._pool = pool
        self._url = url
        self._partitions = Partitions()

    @classmethod
    async def open(cls, url: str, *, now: float | None = None) -> PostgresStorage:
        """Connect, bring the schema up to date, and create the current and next partitions.

        `now` (unix seconds, default the clock) says which month is current.
        """
        check_url(url)
        with connecting(url):
            pool = await asyncpg.create_pool(
                url,
                min_size=POOL_MIN,
                max_size=POOL_MAX,
                timeout=CONNECT_TIMEOUT,
                server_settings={"application_name": "ganzhi-collector"},
            )
        storage = cls(pool, url)
        try:
            current = month_of(time.time() if now is None else now)
            async with storage._connection("schema upgrade") as db:
                await migrate(db)
                horizon = next_month(current)
                await storage._partitions.ensure(db, {current, horizon}, horizon)
        except BaseException:
            await pool.close()
            raise
        return storage

    @property
    def url(self) -> str:
        """The database URL, password hidden (for logs)."""
        return redacted(self._url)

    @property
    def partitions(self) -> Partitions:
        """The partition cache (retention must `forget` it after dropping partitions)."""
        return self._partitions

    async def close(self) -> None:
        """Close the pool once borrowed connections are back, or end them after CLOSE_TIMEOUT.

        A connection still borrowed that long belongs to a task that will not give it back
        (asyncpg's own close would wait for it for ever): a stopping collector ends it.
        """
        with translated("closing", self._url):
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._pool.close()  # terminates the pool when cancelled
            except TimeoutError:
                log.warning(
                    "storage_connections_ended_at_close",
                    url=self.url,
                    waited_seconds=CLOSE_TIMEOUT,
                )

    @asynccontextmanager
    async def _connection(self, action: str) -> AsyncIterator[Db]:
        """A pooled connection; driver errors inside become StorageError naming `action`."""
        with translated(action, self._url):
            async with self._pool.acquire() as db:
                yield db

    @asynccontextmanager
    async def _writing(self, action: str) -> AsyncIterator[Db]:
        """A pooled connection inside a transaction that commits when the block ends."""
        async with self._connection(action) as db, db.transaction():
            yield db

    @asynccontextmanager
    async def _snapshot(self, action: str) -> AsyncIterator[Db]:
        """A pooled connection inside a read-only transaction that reads one snapshot."""
        async with (
            self._connection(action) as db,
            db.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield db

    async def ping(self) -> None:
        """Run a trivial query."""
        async with self._connection("ping") as db:
            await db.fetchval("SELECT 1")

    @asynccontextmanager
    async def _reading(self, action: str) -> AsyncIterator[Fetch]:
        """A pooled connection's Fetch; driver errors become StorageError naming `action`."""
        async with self._connection(action) as db:
            yield fetcher(db)

    @asynccontextmanager
    async def _feed_writing(self) -> AsyncIterator[tuple[Fetch, WriteEntries]]:
        """A transaction holding the feed lock: ids in commit order, one sweep at a time."""
        async with self._writing("announcing active alarms") as db:
            await feed.take_feed_lock(db)

            async def write(entries: Sequence[JournalEntry]) -> None:
                if entries:
                    await feed.write_journal(db, entries)
                    await feed.finish_feed_commit(db)

            yield fetcher(db), write

    # --- ingest -----------------------------------------------------------------------------

    async def ingest(self, batch: IngestBatch) -> BatchResult:
        """Store blocks once, audit rejections, apply statuses: one durable transaction.

        A reading that finds no partition (retention dropped its month in another process)
        fails the transaction; the cache is dropped and the batch tried once more.
        """
        needs = months_needed(batch)
        months = set[Month]().union(*needs)
        arrival = max((b.received_at for b in batch.blocks), default=time.time())
        horizon = ingest_horizon(arrival, batch.ahead_allowance)
        for attempt in (1, 2):
            try:
                return await self._ingest_once(batch, needs, months, horizon)
            except StorageError as exc:
                if attempt == 1 and isinstance(exc.__cause__, asyncpg.CheckViolationError):
                    self._partitions.forget()
                    continue
                raise
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def _ingest_once(
        self, batch: IngestBatch, needs: list[set[Month]], months: set[Month], horizon: Month
    ) -> BatchResult:
        async with self._connection("ingest") as db:
            left = await self._partitions.ensure(db, months, horizon, needs)
            if deferred := [i for i, need in enumerate(needs) if left.intersection(need)]:
                raise BlocksDeferredError(deferral_message(left, len(deferred)), deferred)
            async with db.transaction():
                return await ingest_batch(db, batch)

    # --- buckets (GET /v1/readings?every=) ---------------------------------------------------

    @asynccontextmanager
    async def _bucket_queries(
        self, rollups: bool, scope: Scope, where: ReadingFilter, grid: BucketGrid
    ) -> AsyncIterator[PostgresBucketQueries]:
        """On a pooled connection held for the page; driver errors name the read."""
        async with self._connection("reading buckets") as db:
            chosen = PostgresRollupBucketQueries if rollups else PostgresBucketQueries
            yield chosen(scope, where, db=db, grid=grid)

    # --- capabilities (collector.storage.capabilities): live feed, quality -----------------

    def relay_commits(self, signal: CommitSignal) -> AbstractAsyncContextManager[None]:
        """Ring `signal` on every feed commit to this database, by any collector (LISTEN)."""
        return relay_commits(self._url, signal)
