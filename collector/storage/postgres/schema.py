"""The PostgreSQL schema as numbered migrations, applied under one advisory lock.

`schema_migrations` records each applied version. A migration is one transaction (its DDL and
its row in `schema_migrations` commit together), and the whole run holds a session advisory
lock, so that two collectors starting at once against one database apply each step once. A
database whose newest version is above what this code knows is refused: an older collector
must not write into a schema it does not understand.

The SQL of each step, and the choices the tables make, are in
`collector.storage.postgres.migration_sql`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import asyncpg

from collector.storage.base import StorageError
from collector.storage.postgres.active_move import move_active
from collector.storage.postgres.connection import Db, check_url, connecting, translated
from collector.storage.postgres.locks import MIGRATION_LOCK
from collector.storage.postgres.migration_sql import (
    VERSION_1,
    VERSION_2,
    VERSION_3,
    VERSION_4,
    VERSION_5,
    VERSION_6,
    VERSION_7,
    VERSION_8,
    VERSION_9,
    VERSION_10,
    VERSION_11,
    VERSION_12,
)
from collector.storage.postgres.partitions import index_future
from collector.storage.rollup_split import POSTGRES_SPLIT


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: its version, what it does, and the SQL that does it."""

    version: int
    summary: str
    sql: str


MIGRATIONS: Final = (
    Migration(1, "the collector's tables, readings partitioned by month", VERSION_1),
    Migration(2, "per-minute rollups of the readings, partitioned by month", VERSION_2),
    Migration(3, "the live feed journal, presence intervals, poll periods", VERSION_3),
    Migration(4, "the audit trail as a hash chain of aggregated rows, API tokens", VERSION_4),
    Migration(5, "gateway keys: retired_at and the block that announced each", VERSION_5),
    Migration(6, "an index on open holes: a batch rewrites only those it changes", VERSION_6),
    Migration(7, "blocks go with their readings' month: newest_t, pruned_through", VERSION_7),
    Migration(8, "where retention deleted raw readings: retention_state", VERSION_8),
    Migration(9, "gap records stored twice by earlier collectors: the first kept", VERSION_9),
    Migration(10, "alarm halves stamped ahead of the collector's clock", VERSION_10),
    Migration(11, "an index on gap records by time: a batch looks its own up", VERSION_11),
    Migration(
        12,
        "an alarm journal row's `active` in a column: older collectors parse the payload",
        VERSION_12,
    ),
    Migration(
        13,
        "rollups keyed by quota and unit too: minutes that held two rolled up again",
        POSTGRES_SPLIT,
    ),
)
"""Every step, in order: `MIGRATIONS[n - 1]` takes the schema from version n - 1 to n."""

SCHEMA_VERSION: Final = MIGRATIONS[-1].version

_BOOKKEEPING: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def _check_numbering() -> None:
    numbers = [migration.version for migration in MIGRATIONS]
    if numbers != list(range(1, len(MIGRATIONS) + 1)):
        raise AssertionError(f"migrations must be numbered 1..n in order, not {numbers}")


_check_numbering()


async def schema_version(db: Db) -> int:
    """The newest applied migration (0 for a database without `schema_migrations`)."""
    present = await db.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not present:
        return 0
    version = await db.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
    return int(version)


async def migrate(db: Db) -> tuple[int, int]:
    """Apply the migrations `db` lacks; return (version before, version after).

    Holds the migration lock for the migrations: a second collector waits here, then finds
    everything applied. Each step commits on its own, so a run cut short resumes where it
    stopped. FUTURE's index is built after the lock is given back: a concurrent build waits
    for every older snapshot, that of a collector waiting for the lock too (a deadlock).
    """
    await db.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await db.execute(_BOOKKEEPING)
        before = await schema_version(db)
        if before > SCHEMA_VERSION:
            raise StorageError(
                f"the database schema is at version {before}, newer than this collector's"
                f" {SCHEMA_VERSION}: run a collector at least as new as the one that upgraded it"
            )
        for migration in MIGRATIONS[before:]:
            async with db.transaction():
                await db.execute(migration.sql)
                await db.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)", migration.version
                )
        # Migration 12's payloads, in batches of their own transactions (outside the step,
        # whose exclusive lock on `feed` would last the whole rewrite).
        await move_active(db)
    finally:
        if not db.is_closed():  # a lost connection has given the lock back already
            await db.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    # Not a numbered step: CREATE INDEX CONCURRENTLY runs outside any transaction, and
    # FUTURE is made by ingest, not by a migration (so may come after them all).
    await index_future(db)
    return before, SCHEMA_VERSION


async def upgrade(url: str) -> tuple[int, int]:
    """Bring the database at `url` to this code's schema; (version before, version after).

    For `collector db upgrade`: the same steps `PostgresStorage.open` applies, on one
    connection of its own.
    """
    check_url(url)
    with connecting(url):
        db: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(url)
    with translated("schema upgrade", url):
        try:
            return await migrate(db)
        finally:
            await db.close()
