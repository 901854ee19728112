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
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from collector.audit.chain import ActionEntry, AuditRow, ChainHead, UnreadableRow
from collector.feed.due import ActivationSweep, Announced
from collector.model import (
    BatchResult,
    Gateway,
    GatewayKey,
    IngestBatch,
    KeyGrant,
)
from collector.readmodel import (
    BucketGrid,
    ReadingFilter,
    Scope,
)
from collector.storage import activations, audit
from collector.storage.activations import WriteEntries
from collector.storage.base import Storage, StorageError
from collector.storage.keys import check_owner
from collector.storage.queries import Fetch
from collector.storage.reads import CapabilityReads
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
from collector.tokens import StoredToken


class SqliteStorage(CapabilityReads, Storage):
    """The Storage protocol on one SQLite file."""

    feed_statements = feed.STATEMENTS
    quality_aggregates = quality.AGGREGATES

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
        async with self._on_reader("ping") as db:
            await db.execute_fetchall("SELECT 1")

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            db = self._writer
            try:
                # In the try: a cancellation while BEGIN waits for the lock rolls back what
                # it begins (schema.rollback).
                try:
                    await db.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    raise StorageError(f"cannot start a transaction: {exc}") from exc
                yield db
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                await rollback(db)
                raise StorageError(f"transaction failed: {exc}") from exc
            except BaseException:
                await rollback(db)
                raise

    @asynccontextmanager
    async def _on_reader(self, action: str) -> AsyncIterator[aiosqlite.Connection]:
        """The reader connection; its errors become StorageError naming `action`.

        Every read goes through here, as PostgreSQL's go through `_connection`: the callers
        (the API's 503, the activation sweep's and ingest's next try) know StorageError only,
        and a raw "database is locked" ended the task that met it.
        """
        try:
            yield self._reader
        except sqlite3.Error as exc:
            raise StorageError(f"{action} failed: {exc}") from exc

    @asynccontextmanager
    async def _reading(self, action: str) -> AsyncIterator[Fetch]:
        """Reads run on the reader connection (`_on_reader`)."""
        async with self._on_reader(action):
            yield self._fetch

    @asynccontextmanager
    async def _feed_writing(self) -> AsyncIterator[tuple[Fetch, WriteEntries]]:
        async with self._transaction() as db:
            yield fetcher(db), functools.partial(journal.write_journal, db)

    async def announce_activations(self, sweep: ActivationSweep) -> Announced:
        """The feed's alarm events for alarms raised ahead that came due (AlarmActivations)."""
        return await activations.announce(
            sweep, reading=self._reading, writing=self._feed_writing, statements=feed.STATEMENTS
        )

    # --- registry ---------------------------------------------------------------------------

    async def register(self, gateway: Gateway, key: GatewayKey) -> None:
        """Register a gateway (or find it registered identically) and add a key to it."""
        check_owner(gateway, key)
        async with self._transaction() as db:
            await registry.register(db, gateway, key)

    async def revoke(self, gateway: str, kid: str | None, at: float) -> tuple[str, ...]:
        """Revoke one key (or every active key) of a gateway; return the kids revoked."""
        async with self._transaction() as db:
            return await registry.revoke(db, gateway, kid, at)

    async def find_gateways(self, ids: Collection[str]) -> Mapping[str, Gateway]:
        """The registered gateways among `ids`."""
        async with self._on_reader("reading gateways") as db:
            return await registry.find_gateways(db, ids)

    async def grants(self, kids: Collection[str]) -> Mapping[str, KeyGrant]:
        """The registered keys among `kids`, each with its owning gateway."""
        async with self._on_reader("reading keys") as db:
            return await registry.grants(db, kids)

    # --- ingest -----------------------------------------------------------------------------

    async def ingest(self, batch: IngestBatch) -> BatchResult:
        """Store blocks once, audit rejections, apply statuses: one durable transaction."""
        async with self._transaction() as db:
            # Returned once the transaction has committed (the context exits first).
            return await ingest.store_batch(db, batch)

    # --- API, export and verify reads: collector.storage.reads.CapabilityReads ------------

    # --- buckets (GET /v1/readings?every=) ---------------------------------------------------

    @asynccontextmanager
    async def _bucket_queries(
        self, rollups: bool, scope: Scope, where: ReadingFilter, grid: BucketGrid
    ) -> AsyncIterator[SqliteBucketQueries]:
        """On the reader connection, like every read: its errors name the read."""
        async with self._on_reader("reading buckets") as db:
            chosen = SqliteRollupBucketQueries if rollups else SqliteBucketQueries
            yield chosen(scope, where, db=db, grid=grid)

    # --- capabilities (collector.storage.capabilities): live feed, quality -----------------

    # --- audit chain and API tokens (AuditTrail, TokenStore) -----------------------------------

    async def record_actions(self, entries: Sequence[ActionEntry]) -> None:
        """Append admin actions or command results to the chain (sealed at once)."""
        if entries:
            async with self._transaction() as db:
                await audit.append(SqliteChain(db), actions=entries, now=max(e.at for e in entries))

    async def seal_audit(self, now: float) -> int:
        """Chain the open rejection rows whose minute is over at `now`; how many."""
        async with self._transaction() as db:
            return await audit.seal_due(SqliteChain(db), now)

    async def audit_head(self) -> tuple[ChainHead | None, int]:
        """The stored chain head and how many rows are open, from one snapshot."""
        async with self._on_reader("reading the audit head") as db:
            await db.execute("BEGIN")
            try:
                return await audit.head(SqliteChain(db)), await audit.open_rows(SqliteChain(db))
            finally:
                await db.execute("COMMIT")

    async def audit_rows(
        self, *, after: int | None, limit: int
    ) -> tuple[AuditRow | UnreadableRow, ...]:
        """Sealed rows with chain_seq above `after`, in chain order.

        An UnreadableRow is one changed by hand into what no AuditRow holds.
        """
        async with self._on_reader("reading the audit trail") as db:
            return tuple(await audit.sealed_rows(SqliteChain(db), after=after, limit=limit))

    async def add_token(self, token: StoredToken, digest: str, actor: str) -> None:
        """Store a token by the hash of its secret, with its audit row."""
        async with self._transaction() as db:
            await tokens.add(db, token, digest, actor)

    async def revoke_token(self, name: str, at: float, actor: str) -> bool:
        """Revoke a token, with its audit row; False when it was revoked already."""
        async with self._transaction() as db:
            return await tokens.revoke(db, name, at, actor)
