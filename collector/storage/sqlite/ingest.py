"""SQLite's side of one ingest batch (`collector.storage.batch`), in the caller's transaction.

Each batch is one `BEGIN IMMEDIATE` transaction built from a handful of `executemany` calls,
because aiosqlite pays a thread hop per call. Lookups go by chunks of `VALUES` keys.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from sqlite3 import Row
from typing import Any, Final

import aiosqlite

from collector.feed.core import JournalEntry
from collector.model import AuditEntry, BatchResult, IncomingBlock, IngestBatch
from collector.storage.batch import store_batch as store
from collector.storage.ingest_rows import INSERT_READING, Params, reading_records
from collector.storage.lookups import READING_KEY, KeyColumns, KeyLookups
from collector.storage.rollups import MinuteRollup
from collector.storage.sqlite import journal, registry, rollups
from collector.storage.sqlite.audit import SqliteChain
from collector.storage.sqlite.sql import CHUNK, chunks, values

# Readings are looked up by the thousand (a batch holds up to batch_max blocks of them).
_READING_CHUNK: Final = 2000

# A resent old reading must not replace a newer one; any replaces one past the cutoff (the last
# parameter), stored ahead of the collector's clock by an earlier version (storage.ahead).
_UPSERT_LATEST: Final = (
    "INSERT INTO latest (gateway, point, quota, t, value, unit, quality, flags)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (gateway, point) DO UPDATE SET quota = excluded.quota, t = excluded.t,"
    " value = excluded.value, unit = excluded.unit, quality = excluded.quality,"
    " flags = excluded.flags WHERE excluded.t >= latest.t OR latest.t > ?"
)


async def store_batch(db: aiosqlite.Connection, batch: IngestBatch) -> BatchResult:
    """Store blocks once, audit rejections, apply statuses: the whole batch, one transaction."""
    return await store(_SqliteBatch(db), batch)


def keyed(columns: KeyColumns, count: int, query: str) -> str:
    """A lookup's statement on `count` keys: `query` with `{keys}` as `KeyLookups._lookup` runs it.

    `k (columns)` is a `VALUES` list, cross joined (`k` stays the outer loop); the keys'
    parameters come first.
    """
    names = ", ".join(name for name, _ in columns)
    return (
        f"WITH k ({names}) AS (VALUES {values(len(columns), count)})"
        f" {query.format(keys='k CROSS JOIN')}"
    )


class _SqliteBatch(KeyLookups):
    """`collector.storage.batch.BatchSteps` on one aiosqlite connection."""

    # An index lookup each.
    _newest_times = (
        "SELECT k.gateway, k.point, (SELECT max(r.t) FROM readings r"
        " WHERE r.gateway = k.gateway AND r.point = k.point AND r.t <= ?) FROM k"
    )

    # The latest interval by an index seek on (gateway, until) each.
    _newest_presence = (
        "SELECT p.id, p.gateway, p.since, p.until FROM {keys} presence p"
        " ON p.id = (SELECT x.id FROM presence x WHERE x.gateway = k.gateway"
        " ORDER BY x.until DESC LIMIT 1)"
    )

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    def _chain(self) -> SqliteChain:
        return SqliteChain(self._db)

    async def _lookup(
        self, columns: KeyColumns, keys: Collection[tuple[Any, ...]], query: str, *extra: object
    ) -> list[Row]:
        """`query` on `k (columns)`, a `VALUES` list of the keys, chunk by chunk."""
        found: list[Row] = []
        size = _READING_CHUNK if columns == READING_KEY else CHUNK
        for chunk in chunks(sorted(set(keys)), size):
            found.extend(
                await self._db.execute_fetchall(
                    keyed(columns, len(chunk), query),
                    [*(part for key in chunk for part in key), *extra],
                )
            )
        return found

    async def run(self, statement: str, rows: Sequence[Params]) -> None:
        await self._db.executemany(statement, rows)

    async def upsert_latest(self, rows: Sequence[Params], cutoff: float) -> None:
        await self._db.executemany(_UPSERT_LATEST, [(*row, cutoff) for row in rows])

    async def fold_rollups(self, rollups_: Sequence[MinuteRollup]) -> None:
        await rollups.fold_rollups(self._db, rollups_)

    async def adopt_keys(
        self, blocks: Sequence[IncomingBlock], overlap: float
    ) -> Sequence[AuditEntry]:
        return await registry.adopt_keys(self._db, blocks, overlap)

    async def finish(self, new: Sequence[IncomingBlock], entries: Sequence[JournalEntry]) -> None:
        # The journal's rows name the newest reading id before them (readings_through).
        await self._db.executemany(INSERT_READING, reading_records(new))
        await journal.write_journal(self._db, entries)
