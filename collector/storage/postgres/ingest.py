"""PostgreSQL's side of one ingest batch (`collector.storage.batch`), step for step SQLite's.

The caller (`PostgresStorage.ingest`) has created the partitions the batch's readings need
and opened the transaction; `ingest_batch` first takes the lock of every gateway the batch
writes (`collector.storage.postgres.locks`), then runs the backend-neutral batch: lookups pass
their keys as arrays (`unnest`), readings go in with COPY, the small tables with `executemany`.

The live feed's rows come last: a batch that adds readings or journal entries takes the feed
lock, COPYs its readings, appends its journal and notifies listening collectors, all just
before COMMIT, so that feed ids follow commit order (`collector.storage.postgres.feed`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Final

from asyncpg import Record

from collector.feed.core import JournalEntry
from collector.model import AuditEntry, BatchResult, IncomingBlock, IngestBatch
from collector.storage.base import StorageError
from collector.storage.batch import store_batch
from collector.storage.float_sums import POSTGRES_FLOATS
from collector.storage.ingest_rows import (
    READING_FIELDS,
    Params,
    reading_records,
)
from collector.storage.lookups import KeyColumns, KeyLookups
from collector.storage.months import Month, months_of
from collector.storage.postgres import feed, registry
from collector.storage.postgres.audit import PostgresChain
from collector.storage.postgres.connection import Db, execute_many
from collector.storage.postgres.locks import lock_gateways
from collector.storage.postgres.rows import numbered
from collector.storage.postgres.schema import SCHEMA_VERSION
from collector.storage.rollups import MinuteRollup, fold_statement, rollup_rows

# A resent old reading must not replace a newer one; any replaces one past the cutoff ($9),
# stored ahead of the collector's clock by an earlier version (collector.storage.ahead).
_UPSERT_LATEST: Final = (
    "INSERT INTO latest (gateway, point, quota, t, value, unit, quality, flags)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[],"
    " $5::float8[], $6::text[], $7::text[], $8::text[])"
    " ON CONFLICT (gateway, point) DO UPDATE SET quota = excluded.quota,"
    " t = excluded.t, value = excluded.value, unit = excluded.unit,"
    " quality = excluded.quality, flags = excluded.flags"
    " WHERE excluded.t >= latest.t OR latest.t > $9"
)


def batch_gateways(batch: IngestBatch) -> set[str]:
    """Every gateway whose state the batch may write: the locks its transaction takes."""
    return {
        *(incoming.block.header.gateway for incoming in batch.blocks),
        *(status.gateway for status in batch.statuses),
        *(meta.meta.gateway for meta in batch.metas),
    }


def months_needed(batch: IngestBatch) -> list[set[Month]]:
    """Each block's months of the readings it may store (they need partitions)."""
    return [months_of(r.t for r in incoming.entries.readings) for incoming in batch.blocks]


async def ingest_batch(db: Db, batch: IngestBatch) -> BatchResult:
    """Store blocks once, audit rejections, apply statuses and metas (inside a transaction)."""
    await _refuse_a_newer_schema(db)
    await lock_gateways(db, batch_gateways(batch))
    return await store_batch(_PostgresBatch(db), batch)


def _columns(rows: Sequence[Params]) -> list[list[object]]:
    """`rows` as one list per column: the arrays `unnest` takes."""
    return [list(column) for column in zip(*rows, strict=True)]


async def _refuse_a_newer_schema(db: Db) -> None:
    """A collector still running after a newer one migrated stops writing, batch by batch.

    It would skip what the newer schema keeps (journal, rollups, ...); refused, the batch is
    not acknowledged and the agents resend it to a collector that understands the schema.
    """
    version = await db.fetchval("SELECT max(version) FROM schema_migrations")
    if version is not None and int(version) > SCHEMA_VERSION:
        raise StorageError(
            f"the database schema is at version {version}, newer than this collector's"
            f" {SCHEMA_VERSION}: it must be upgraded before it may write"
        )


_FOLD_ROLLUPS: Final = fold_statement(
    rows="SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[], $5::text[],"
    " $6::bigint[], $7::float8[], $8::float8[], $9::float8[], $10::float8[],"
    " $11::float8[], $12::float8[])",
    smaller="least",
    larger="greatest",
    # PostgreSQL's float8 addition raises on overflow, where SQLite and Python give infinity:
    # a second reading of 1.7e308 in a minute failed its batch for good.
    total_sum=POSTGRES_FLOATS.plus_or_infinity("o.total", "excluded.total"),
)


async def _fold_rollups(db: Db, rollups: Sequence[MinuteRollup]) -> None:
    """Merge a batch's per-minute rollups into the held ones (partitions exist: see store)."""
    if not rollups:
        return
    rows = rollup_rows(
        sorted(rollups, key=lambda r: (r.gateway, r.point, r.minute, r.quota, r.unit))
    )
    await db.execute(_FOLD_ROLLUPS, *_columns(rows))


def keyed(columns: KeyColumns, query: str) -> str:
    """A lookup's statement: `query` with `{keys}` rendered as `KeyLookups._lookup` runs it.

    `k (columns)` is `unnest` of one array parameter per column (the first parameters), joined.
    """
    casts = ", ".join(f"${n}::{kind}[]" for n, (_, kind) in enumerate(columns, 1))
    names = ", ".join(name for name, _ in columns)
    return query.format(keys=f"unnest({casts}) AS k ({names}) JOIN")


class _PostgresBatch(KeyLookups):
    """`collector.storage.batch.BatchSteps` on one asyncpg connection."""

    # Not from `latest`, which leaves out readings stamped ahead of the collector's clock
    # (collector.storage.ahead): one stored ahead whose time has come since is at or before
    # the cutoff, and a reading of its (point, t) that is not looked up would fail the COPY.
    # The partitions are in t order: the newest that holds the series answers.
    _newest_times = (
        "SELECT k.gateway, k.point, n.t FROM {keys} LATERAL (SELECT max(r.t) AS t"
        " FROM readings r WHERE r.gateway = k.gateway AND r.point = k.point AND r.t <= $3) n"
        " ON true"
    )

    # Ties on `until` go to the newest row, as SQLite's backward walk of its index gives.
    _newest_presence = (
        "SELECT p.id, p.gateway, p.since, p.until FROM {keys} LATERAL"
        " (SELECT x.id, x.gateway, x.since, x.until FROM presence x"
        " WHERE x.gateway = k.gateway ORDER BY x.until DESC, x.id DESC LIMIT 1) p ON true"
    )

    def __init__(self, db: Db) -> None:
        self._db = db

    def _chain(self) -> PostgresChain:
        # The chain's lock comes after the gateways' and before the feed's (locks.py).
        return PostgresChain(self._db)

    async def _lookup(
        self, columns: KeyColumns, keys: Collection[tuple[Any, ...]], query: str, *extra: object
    ) -> list[Record]:
        """`query` on `k (columns)`, the keys as `unnest` of one array per column."""
        if not keys:
            return []
        return await self._db.fetch(keyed(columns, query), *_columns(sorted(set(keys))), *extra)

    async def run(self, statement: str, rows: Sequence[Params]) -> None:
        await execute_many(self._db, numbered(statement), rows)

    async def upsert_latest(self, rows: Sequence[Params], cutoff: float) -> None:
        await self._db.execute(_UPSERT_LATEST, *_columns(rows), cutoff)

    async def fold_rollups(self, rollups: Sequence[MinuteRollup]) -> None:
        await _fold_rollups(self._db, rollups)

    async def adopt_keys(
        self, blocks: Sequence[IncomingBlock], overlap: float
    ) -> Sequence[AuditEntry]:
        return await registry.adopt_keys(self._db, blocks, overlap)

    async def finish(self, new: Sequence[IncomingBlock], entries: Sequence[JournalEntry]) -> None:
        records = reading_records(new)
        if not records and not entries:
            return
        await feed.take_feed_lock(self._db)
        if records:
            # Every writer of these gateways holds their locks, and unique_readings dropped
            # the keys stored already: no row can conflict, so COPY (no ON CONFLICT) is safe.
            await self._db.copy_records_to_table(
                "readings", records=records, columns=READING_FIELDS
            )
        await feed.write_journal(self._db, entries)
        await feed.finish_feed_commit(self._db)
