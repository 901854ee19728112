"""SQLite storage: one writer connection for ingest, registry and tokens, one reader for reads.

Reads go through their own connection so they never see a half-written batch and WAL lets
them run beside the writer; a snapshot (`_snapshot`) opens a connection of its own. The SQL
lives in `schema` and `connection` (tables, upgrades, connections), `ingest`, the dialect's
`registry` and `tokens`, and the backend-neutral `collector.storage.queries` and
`registry_reads`; the calls both backends make alike are `DialectStore`'s. This class owns
the connections, the write lock and the transaction, and hands each call the connection it
runs on.
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
        path: Path,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        indexes_built: tuple[IndexBuilt, ...] = (),
    ) -> None:
        self._path = path  # each snapshot opens its own connection to it
        self._writer = writer
        # What the open built in a file that lacked it, for `serve` to log (schema.migrate).
        self.indexes_built = indexes_built
        self._reader = reader
        self._fetch = fetcher(reader)
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
        return cls(path, writer, reader, built)

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

        Shared, no lock: reads run in autocommit, one statement each, in the order they are
        queued, so a token check or /healthz's ping runs between the statements of a long read
        (a `?every=` bucket page) instead of waiting for all of it. Nothing may therefore open
        a transaction on this connection: every read queued meanwhile would run inside it.
        """
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
        """A connection of its own inside one read transaction; its errors name `action`.

        Its own, opened for the snapshot and closed after: in WAL mode a read transaction sees
        the state committed when its first read began, whatever commits later. On the shared
        reader (`_connection`) every read queued meanwhile ran inside it (a token revoked
        since then still admitted) and a second snapshot's BEGIN failed; a lock keeping them
        out kept them out of a bucket page too. A file opened and a thread started per
        snapshot is cheap at its one caller, `collector audit verify`. Closed shielded, also
        when cancelled (closing ends its transaction): nothing of it stays open.
        """
        try:
            db = await connect(self._path)
        except sqlite3.Error as exc:
            raise StorageError(f"{action} failed: cannot open a connection: {exc}") from exc
        try:
            await db.execute("BEGIN")
            yield db
        except sqlite3.Error as exc:
            raise StorageError(f"{action} failed: {exc}") from exc
        finally:
            await asyncio.shield(db.close())

    # --- ingest -----------------------------------------------------------------------------

    async def ingest(self, batch: IngestBatch) -> BatchResult:
        """Store blocks once, audit rejections, apply statuses: one durable transaction."""
        async with self._transaction("ingest") as db:
            # Returned once the transaction has committed (the context exits first).
            return await ingest.store_batch(db, batch)

    # --- buckets (GET /v1/readings?every=) ---------------------------------------------------

    @asynccontextmanager
    async def _bucket_queries(
        self, rollups: bool, scope: Scope, where: ReadingFilter, grid: BucketGrid
    ) -> AsyncIterator[SqliteBucketQueries]:
        """On the reader connection, like every read: its errors name the read."""
        async with self._connection("reading buckets") as db:
            chosen = SqliteRollupBucketQueries if rollups else SqliteBucketQueries
            yield chosen(scope, where, db=db, grid=grid)
