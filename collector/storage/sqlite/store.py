"""SQLite storage: one writer connection for ingest and registry, one reader for the API.

Reads go through their own connection so the API never sees a half-written batch and WAL
lets them run beside the writer. The SQL lives in `schema` (tables, upgrades, connections),
`registry`, `ingest` and the backend-neutral `collector.storage.queries`; this class owns the
connections, the write lock and the transaction, and hands each call the connection it runs on.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import aiosqlite

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
from collector.storage.base import StorageError
from collector.storage.dialect_store import Dialect, DialectStore
from collector.storage.queries import Fetch
from collector.storage.sqlite import (
    feed,
    ingest,
    journal,
    quality,
    registry,
    tokens,
)
from collector.storage.sqlite.audit import SqliteChain
from collector.storage.sqlite.buckets import SqliteBucketQueries, SqliteRollupBucketQueries
from collector.storage.sqlite.connection import connect, open_database, rollback
from collector.storage.sqlite.schema import IndexBuilt, migrate
from collector.storage.sqlite.sql import fetcher


class SqliteStorage(DialectStore[aiosqlite.Connection]):
    """The Storage protocol on one SQLite file."""

    feed_statements = feed.STATEMENTS
    quality_aggregates = quality.AGGREGATES
    dialect = Dialect(chain=SqliteChain, registry=registry, tokens=tokens)

    def __init__(
        self,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        indexes_built: tuple[IndexBuilt, ...] = (),
    ) -> None:
        self._writer = writer
        # What the open built in a file that lacked it, for `serve` to log (schema.migrate).
        self.indexes_built = indexes_built
        self._reader = reader
        self._fetch = fetcher(reader)
        # One read at a time on the reader connection, a snapshot's whole transaction being
        # one: see `_connection`.
        self._read_lock = asyncio.Lock()
        # One transaction at a time on the writer connection; other processes wait on the
        # database lock (busy_timeout) instead.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SqliteStorage:
        """Open (creating if needed) the database at `path` and bring its schema up to date."""
        writer = await open_database(path)
        try:
            built = await migrate(writer)
            reader = await connect(path)
        except sqlite3.Error as exc:
            await writer.close()
            raise StorageError(f"cannot open database {path}: {exc}") from exc
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader, built)

    async def close(self) -> None:
        """Close both connections."""
        await self._reader.close()
        await self._writer.close()

    async def ping(self) -> None:
        """Run a trivial query."""
        async with self._connection("ping") as db:
            await db.execute_fetchall("SELECT 1")

    @asynccontextmanager
    async def _transaction(self, action: str) -> AsyncIterator[aiosqlite.Connection]:
        """The writer's transaction, holding the file's write lock from its BEGIN.

        Its errors become StorageError naming `action`, as PostgreSQL's do.
        """
        async with self._write_lock:
            db = self._writer
            try:
                # In the try: a cancellation while BEGIN waits for the lock rolls back what
                # it begins (schema.rollback). IMMEDIATE: the audit chain's lock is this
                # (sqlite.audit.SqliteChain.lock does nothing), so a chain step reads the
                # head no other writer can move before this commits.
                try:
                    await db.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    raise StorageError(
                        f"{action} failed: cannot start a transaction: {exc}"
                    ) from exc
                yield db
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                await rollback(db)
                raise StorageError(f"{action} failed: {exc}") from exc
            except BaseException:
                await rollback(db)
                raise

    @asynccontextmanager
    async def _connection(self, action: str) -> AsyncIterator[aiosqlite.Connection]:
        """The reader connection; its errors become StorageError naming `action`.

        Every read goes through here, as PostgreSQL's go through its `_connection`: the callers
        (the API's 503, the activation sweep's and ingest's next try) know StorageError only,
        and a raw "database is locked" ended the task that met it.

        Held under `_read_lock` for the whole read. A connection has one transaction state, and
        aiosqlite runs its statements in the order they are queued: a read queued while a
        snapshot (`_snapshot`) was open ran inside it, reading the state the snapshot began
        with (a token revoked since then still admitted), and a second snapshot's BEGIN failed
        ("cannot start a transaction within a transaction"). A lock rather than a connection
        per snapshot: the connection's one thread runs one statement at a time anyway, so a
        read waits for no more than the statements queued ahead of it did; ingest and the
        registry write on the writer connection (WAL), which the lock does not touch; and a
        snapshot stays a BEGIN on an open connection, not a file opened and a thread started
        per snapshot. No read may therefore start another read inside its block (the lock is
        not reentrant): each is one query function on one Fetch, or a snapshot's steps.
        """
        async with self._read_lock:
            try:
                yield self._reader
            except sqlite3.Error as exc:
                raise StorageError(f"{action} failed: {exc}") from exc

    @asynccontextmanager
    async def _reading(self, action: str) -> AsyncIterator[Fetch]:
        """Reads run on the reader connection (`_connection`)."""
        async with self._connection(action):
            yield self._fetch

    @asynccontextmanager
    async def _feed_writing(self) -> AsyncIterator[tuple[Fetch, WriteEntries]]:
        async with self._transaction("announcing active alarms") as db:
            yield fetcher(db), functools.partial(journal.write_journal, db)

    # --- registry, audit chain and API tokens: collector.storage.dialect_store.DialectStore ---

    def _writing(self, action: str) -> AbstractAsyncContextManager[aiosqlite.Connection]:
        """The write transaction (`_transaction`), `action` naming it in errors."""
        return self._transaction(action)

    @asynccontextmanager
    async def _snapshot(self, action: str) -> AsyncIterator[aiosqlite.Connection]:
        """The reader connection inside one read transaction, no other read beside it.

        `_connection` holds the read lock for the whole transaction. Ended by a rollback (it
        wrote nothing), shielded, whatever happens: BEGIN is in the try, since a snapshot
        cancelled while its BEGIN waited left the shared connection in that transaction for
        good (every later snapshot failed, every later read saw the old state).
        """
        async with self._connection(action) as db:
            try:
                await db.execute("BEGIN")
                yield db
            finally:
                await rollback(db)

    # --- ingest -----------------------------------------------------------------------------

    async def ingest(self, batch: IngestBatch) -> BatchResult:
        """Store blocks once, audit rejections, apply statuses: one durable transaction."""
        async with self._transaction("ingest") as db:
            # Returned once the transaction has committed (the context exits first).
            return await ingest.store_batch(db, batch)

    # --- API, export and verify reads: collector.storage.reads.CapabilityReads ------------

    # --- buckets (GET /v1/readings?every=) ---------------------------------------------------

    @asynccontextmanager
    async def _bucket_queries(
        self, rollups: bool, scope: Scope, where: ReadingFilter, grid: BucketGrid
    ) -> AsyncIterator[SqliteBucketQueries]:
        """On the reader connection, like every read: its errors name the read."""
        async with self._connection("reading buckets") as db:
            chosen = SqliteRollupBucketQueries if rollups else SqliteBucketQueries
            yield chosen(scope, where, db=db, grid=grid)
