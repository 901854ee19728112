"""The live feed on PostgreSQL: journal rows written at ingest, the head and pages read by id.

Feed positions are ids, and a stream trusts that every id up to the head it read is committed
(`collector.storage.capabilities.FeedJournal`). PostgreSQL hands out identity values when rows
are inserted, not when they commit: two collectors committing side by side could make id 120
visible while 110 is still in flight, and a stream that moved past 120 would never send 110.
So every transaction that adds to the feed takes one database-wide transaction advisory lock
(FEED_LOCK) just before its readings get their ids, and holds it through COMMIT: ids are then
handed out in commit order, as SQLite's single writer hands out rowids. The ingest does its
lookups and the small tables first, under its gateways' locks only, and the readings COPY and
the journal last, so that the lock covers little more than the COPY and the COMMIT itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from collector.feed.core import (
    JournalEntry,
)
from collector.storage.feed import FeedStatements
from collector.storage.postgres.connection import Db
from collector.storage.postgres.locks import FEED_LOCK
from collector.storage.postgres.notices import announce_commit
from collector.storage.records import READING_COLUMNS

# --- write side (inside the ingest transaction) -------------------------------------------------


async def take_feed_lock(db: Db) -> None:
    """Queue behind every other feed writer; held until this transaction ends.

    Taken after the gateways' locks, by every writer in the same order: no deadlock.
    """
    await db.execute("SELECT pg_advisory_xact_lock($1)", FEED_LOCK)


async def write_journal(db: Db, entries: Sequence[JournalEntry]) -> None:
    """Append `entries` after the batch's readings (their ids are in `readings_through`).

    Under FEED_LOCK, so the highest id this transaction sees is the highest handed out.
    """
    if not entries:
        return
    columns = zip(
        *((e.kind.value, e.gateway, e.point, e.payload, e.at, e.active) for e in entries),
        strict=True,
    )
    # WITH ORDINALITY keeps the entries' order in their ids.
    await db.execute(
        "INSERT INTO feed (kind, gateway, point, readings_through, payload, at, active)"
        " SELECT e.kind, e.gateway, e.point,"
        " (SELECT coalesce(max(id), 0) FROM readings), e.payload, e.at, e.active"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[],"
        " $6::boolean[])"
        " WITH ORDINALITY AS e (kind, gateway, point, payload, at, active, n) ORDER BY e.n",
        *(list(column) for column in columns),
    )


async def finish_feed_commit(db: Db) -> None:
    """Tell the collectors listening that the feed grows when this transaction commits."""
    await announce_commit(db)


# --- read side (collector.storage.feed) -----------------------------------------------------------

STATEMENTS: Final = FeedStatements(
    readings=(
        f"SELECT {READING_COLUMNS}, r.id FROM readings r JOIN gateways g ON g.gateway = r.gateway"
        " WHERE r.id > ? AND r.id <= ?"
    ),
    journal=(
        "SELECT f.id, f.readings_through, f.kind, f.gateway, f.payload, g.enterprise, g.district,"
        " f.at, f.active"
        " FROM feed f JOIN gateways g ON g.gateway = f.gateway WHERE f.id > ? AND f.id <= ?"
    ),
    # The identity sequences' last values (null until a first id is handed out).
    issued=(
        "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('readings', 'id')), 0),"
        " coalesce(pg_sequence_last_value(pg_get_serial_sequence('feed', 'id')), 0)"
    ),
    alarm_id="(f.payload::json ->> 'alarm_id')",
)
