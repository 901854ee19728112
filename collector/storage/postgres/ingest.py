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
from typing import Final

from asyncpg import Record

from collector.audit.chain import ActionEntry
from collector.feed.core import JournalEntry
from collector.model import AuditEntry, BatchResult, IncomingBlock, IngestBatch, StreamState
from collector.readmodel import AlarmState
from collector.storage.alarms import AlarmKey
from collector.storage.base import StorageError
from collector.storage.batch import store_batch
from collector.storage.core import BlockKey, Link, Stream
from collector.storage.ingest_rows import (
    READING_FIELDS,
    Params,
    Series,
    reading_records,
)
from collector.storage.postgres import audit, feed, presence, registry
from collector.storage.postgres.connection import Db
from collector.storage.postgres.locks import lock_gateways
from collector.storage.postgres.rows import numbered
from collector.storage.postgres.schema import SCHEMA_VERSION
from collector.storage.readings import ReadingKey, ReadingValue
from collector.storage.records import ALARM_COLUMNS, alarm_state, stream_state
from collector.storage.rollups import MinuteRollup

# A resent old reading must not replace a newer one.
_UPSERT_LATEST: Final = (
    "INSERT INTO latest (gateway, point, quota, t, value, unit, quality, flags)"
    " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[],"
    " $5::float8[], $6::text[], $7::text[], $8::text[])"
    " ON CONFLICT (gateway, point) DO UPDATE SET quota = excluded.quota,"
    " t = excluded.t, value = excluded.value, unit = excluded.unit,"
    " quality = excluded.quality, flags = excluded.flags WHERE excluded.t >= latest.t"
)
# first_seen is set by the first stored block (0 until then, as in SQLite).
_UPSERT_STREAM: Final = (
    "INSERT INTO ingest_state (gateway, epoch, acked_through, max_seq, missing, declared,"
    " conflict, first_seen, last_seen) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    " ON CONFLICT (gateway, epoch) DO UPDATE SET acked_through = excluded.acked_through,"
    " max_seq = excluded.max_seq, missing = excluded.missing, declared = excluded.declared,"
    " conflict = ingest_state.conflict OR excluded.conflict,"
    " first_seen = CASE WHEN ingest_state.first_seen = 0 THEN excluded.first_seen"
    " ELSE ingest_state.first_seen END,"
    " last_seen = greatest(ingest_state.last_seen, excluded.last_seen)"
)


def batch_gateways(batch: IngestBatch) -> set[str]:
    """Every gateway whose state the batch may write: the locks its transaction takes."""
    return {
        *(incoming.block.header.gateway for incoming in batch.blocks),
        *(status.gateway for status in batch.statuses),
        *(meta.meta.gateway for meta in batch.metas),
    }


def reading_times(batch: IngestBatch) -> list[float]:
    """The times of every reading the batch may store (their months need partitions)."""
    return [r.t for incoming in batch.blocks for r in incoming.entries.readings]


async def ingest_batch(db: Db, batch: IngestBatch) -> BatchResult:
    """Store blocks once, audit rejections, apply statuses and metas (inside a transaction)."""
    await _refuse_a_newer_schema(db)
    await lock_gateways(db, batch_gateways(batch))
    return await store_batch(_PostgresBatch(db), batch)


def _columns(rows: Sequence[Params]) -> list[list[object]]:
    """`rows` as one list per column: the arrays `unnest` takes."""
    return [list(column) for column in zip(*rows, strict=True)]


async def _lookup(
    db: Db, types: str, keys: Collection[tuple[object, ...]], query: str
) -> list[Record]:
    """`query` joined to `k`, the keys as `unnest` of one array per column (`types`)."""
    if not keys:
        return []
    casts = ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(types.split(), 1))
    return await db.fetch(query.format(k=f"unnest({casts}) AS k"), *_columns(sorted(set(keys))))


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


# The merge of collector.storage.rollups.merged, row by row in SQL.
_FOLD_ROLLUPS: Final = """
INSERT INTO readings_1m AS o
    (gateway, point, minute, quota, unit, n, lo, hi, total, newest_t, last_t, last_value)
SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[], $5::text[],
                     $6::bigint[], $7::float8[], $8::float8[], $9::float8[], $10::float8[],
                     $11::float8[], $12::float8[])
ON CONFLICT (gateway, point, minute) DO UPDATE SET
    n = o.n + excluded.n,
    lo = least(o.lo, excluded.lo),
    hi = greatest(o.hi, excluded.hi),
    total = CASE WHEN o.total IS NULL THEN excluded.total
                 WHEN excluded.total IS NULL THEN o.total
                 ELSE o.total + excluded.total END,
    quota = CASE WHEN excluded.newest_t >= o.newest_t THEN excluded.quota ELSE o.quota END,
    unit = CASE WHEN excluded.newest_t >= o.newest_t THEN excluded.unit ELSE o.unit END,
    newest_t = greatest(o.newest_t, excluded.newest_t),
    last_value = CASE WHEN excluded.last_t IS NOT NULL
                       AND (o.last_t IS NULL OR excluded.last_t >= o.last_t)
                      THEN excluded.last_value ELSE o.last_value END,
    last_t = greatest(o.last_t, excluded.last_t)
"""


async def _fold_rollups(db: Db, rollups: Sequence[MinuteRollup]) -> None:
    """Merge a batch's per-minute rollups into the held ones (partitions exist: see store)."""
    if not rollups:
        return
    columns = zip(
        *(
            (r.gateway, r.point, r.minute, r.quota, r.unit, r.n, r.lo, r.hi, r.total,
             r.newest_t, r.last_t, r.last_value)
            for r in sorted(rollups, key=lambda r: (r.gateway, r.point, r.minute))
        ),
        strict=True,
    )  # fmt: skip
    await db.execute(_FOLD_ROLLUPS, *(list(column) for column in columns))


class _PostgresBatch:
    """`collector.storage.batch.BatchSteps` on one asyncpg connection."""

    def __init__(self, db: Db) -> None:
        self._db = db

    async def run(self, statement: str, rows: Sequence[Params]) -> None:
        await self._db.executemany(numbered(statement), rows)

    async def stored_links(self, keys: Collection[BlockKey]) -> dict[BlockKey, Link]:
        found = await _lookup(
            self._db,
            "text text bigint",
            keys,
            "SELECT b.gateway, b.epoch, b.seq, b.hash, b.prev FROM {k} (gateway, epoch, seq)"
            " JOIN blocks b ON b.gateway = k.gateway AND b.epoch = k.epoch AND b.seq = k.seq",
        )
        return {(row[0], row[1], row[2]): (row[3], row[4]) for row in found}

    async def newest_times(self, series: Collection[Series]) -> dict[Series, float]:
        # From `latest`, written with every stored reading in the same transaction: a key
        # lookup instead of one index probe per partition.
        found = await _lookup(
            self._db,
            "text text",
            series,
            "SELECT l.gateway, l.point, l.t FROM {k} (gateway, point)"
            " JOIN latest l ON l.gateway = k.gateway AND l.point = k.point",
        )
        return {(row[0], row[1]): row[2] for row in found}

    async def stored_readings(self, keys: Sequence[ReadingKey]) -> dict[ReadingKey, ReadingValue]:
        found = await _lookup(
            self._db,
            "text text float8",
            keys,
            "SELECT r.gateway, r.point, r.t, r.value, r.unit, r.quality"
            " FROM {k} (gateway, point, t)"
            " JOIN readings r ON r.gateway = k.gateway AND r.point = k.point AND r.t = k.t",
        )
        return {(row[0], row[1], row[2]): (row[3], row[4], row[5]) for row in found}

    async def stored_alarms(self, keys: Sequence[AlarmKey]) -> dict[AlarmKey, AlarmState]:
        found = await _lookup(
            self._db,
            "text text",
            keys,
            f"SELECT {ALARM_COLUMNS} FROM {{k}} (gateway, alarm_id)"
            " JOIN alarms a ON a.gateway = k.gateway AND a.alarm_id = k.alarm_id",
        )
        return {(row[0], row[1]): alarm_state(row) for row in found}

    async def stream_states(self, streams: Collection[Stream]) -> dict[Stream, StreamState]:
        found = await _lookup(
            self._db,
            "text text",
            streams,
            "SELECT s.gateway, s.epoch, s.acked_through, s.max_seq, s.missing, s.declared,"
            " b.hash, s.conflict FROM {k} (gateway, epoch)"
            " JOIN ingest_state s ON s.gateway = k.gateway AND s.epoch = k.epoch"
            " LEFT JOIN blocks b ON b.gateway = s.gateway AND b.epoch = s.epoch"
            " AND b.seq = s.acked_through",
        )
        return {(row[0], row[1]): stream_state(row) for row in found}

    async def upsert_latest(self, rows: Sequence[Params]) -> None:
        await self._db.execute(_UPSERT_LATEST, *_columns(rows))

    async def fold_rollups(self, rollups: Sequence[MinuteRollup]) -> None:
        await _fold_rollups(self._db, rollups)

    async def upsert_streams(self, rows: Sequence[Params]) -> None:
        await self._db.executemany(_UPSERT_STREAM, rows)

    async def adopt_keys(
        self, blocks: Sequence[IncomingBlock], overlap: float
    ) -> Sequence[AuditEntry]:
        return await registry.adopt_keys(self._db, blocks, overlap)

    async def held_statuses(self, gateways: Collection[str]) -> dict[str, tuple[bool, float]]:
        return await feed.held_statuses(self._db, gateways)

    async def record_presence(self, batch: IngestBatch) -> None:
        await presence.record_presence(self._db, batch)

    async def append_audits(
        self, audits: Sequence[AuditEntry], actions: Sequence[ActionEntry], now: float
    ) -> None:
        # The audit chain's lock comes after the gateways' and before the feed's (locks.py).
        await audit.append(self._db, audits, actions, now=now)

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
