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

from collections.abc import Collection, Sequence

from collector.feed.core import (
    FeedFilter,
    FeedKind,
    FeedPage,
    FeedPosition,
    JournalEntry,
    JournalRow,
    journal_event,
)
from collector.readmodel import ReadingRow, Scope
from collector.storage import records
from collector.storage.postgres.connection import Db
from collector.storage.postgres.locks import FEED_LOCK
from collector.storage.postgres.notices import announce_commit
from collector.storage.postgres.rows import Params, scope_clause

# --- write side (inside the ingest transaction) -------------------------------------------------


async def held_statuses(db: Db, gateways: Collection[str]) -> dict[str, tuple[bool, float]]:
    """The stored (online, last_seen) of each of `gateways` that has a status."""
    if not gateways:
        return {}
    found = await db.fetch(
        "SELECT gateway, online, last_seen FROM gateway_status WHERE gateway = ANY($1::text[])",
        sorted(set(gateways)),
    )
    return {row[0]: (bool(row[1]), float(row[2])) for row in found}


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
        *((e.kind.value, e.gateway, e.point, e.payload, e.at) for e in entries), strict=True
    )
    # WITH ORDINALITY keeps the entries' order in their ids.
    await db.execute(
        "INSERT INTO feed (kind, gateway, point, readings_through, payload, at)"
        " SELECT e.kind, e.gateway, e.point,"
        " (SELECT coalesce(max(id), 0) FROM readings), e.payload, e.at"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[])"
        " WITH ORDINALITY AS e (kind, gateway, point, payload, at, n) ORDER BY e.n",
        *(list(column) for column in columns),
    )


async def finish_feed_commit(db: Db) -> None:
    """Tell the collectors listening that the feed grows when this transaction commits."""
    await announce_commit(db)


# --- read side ----------------------------------------------------------------------------------


async def feed_head(db: Db) -> FeedPosition:
    """The newest reading id and journal id, read in one statement (one snapshot)."""
    row = await db.fetchrow(
        "SELECT (SELECT coalesce(max(id), 0) FROM readings),"
        " (SELECT coalesce(max(id), 0) FROM feed)"
    )
    assert row is not None  # noqa: S101 - a SELECT without FROM yields one row
    return FeedPosition(int(row[0]), int(row[1]))


def _filters(where: FeedFilter, table: str, params: Params) -> str:
    sql = ""
    if where.gateway is not None:
        sql += f" AND {table}.gateway = {params.add(where.gateway)}"
    if where.point is not None:
        sql += f" AND {table}.point = {params.add(where.point)}"
    return sql


async def _readings(
    db: Db, scope: Scope, *, where: FeedFilter, after: int, upto: int, limit: int
) -> tuple[tuple[ReadingRow, ...], bool]:
    if FeedKind.READING not in where.kinds or after >= upto:
        return (), False
    params = Params()
    span = f"r.id > {params.add(after)} AND r.id <= {params.add(upto)}"
    sql = _filters(where, "r", params) + scope_clause(scope, "g.district", params)
    found = await db.fetch(
        f"SELECT {records.READING_COLUMNS}, r.id FROM readings r"
        f" JOIN gateways g ON g.gateway = r.gateway WHERE {span}{sql}"
        f" ORDER BY r.id LIMIT {params.add(limit + 1)}",
        *params.values,
    )
    readings = [records.reading(row, row[8]) for row in found]
    return tuple(readings[:limit]), len(readings) > limit


async def _journal(
    db: Db, scope: Scope, *, where: FeedFilter, after: int, upto: int, limit: int
) -> tuple[tuple[JournalRow, ...], bool]:
    kinds = sorted(kind.value for kind in where.kinds if kind is not FeedKind.READING)
    if not kinds or after >= upto:
        return (), False
    params = Params()
    span = f"f.id > {params.add(after)} AND f.id <= {params.add(upto)}"
    sql = f" AND f.kind = ANY({params.add(kinds)}::text[])"
    sql += _filters(where, "f", params) + scope_clause(scope, "g.district", params)
    found = await db.fetch(
        "SELECT f.id, f.readings_through, f.kind, f.gateway, f.payload, g.enterprise,"
        f" g.district FROM feed f JOIN gateways g ON g.gateway = f.gateway WHERE {span}{sql}"
        f" ORDER BY f.id LIMIT {params.add(limit + 1)}",
        *params.values,
    )
    journal = [
        JournalRow(
            id=row[0],
            readings_through=row[1],
            kind=FeedKind(row[2]),
            event=journal_event(FeedKind(row[2]), row[3], row[4]),
            enterprise=row[5],
            district=row[6],
        )
        for row in found
    ]
    return tuple(journal[:limit]), len(journal) > limit


async def feed_page(
    db: Db,
    scope: Scope,
    where: FeedFilter,
    *,
    after: FeedPosition,
    upto: FeedPosition,
    limit: int,
) -> FeedPage:
    """Readings and journal rows in scope and filter with ids in (after, upto], ascending."""
    readings, readings_more = await _readings(
        db, scope, where=where, after=after.readings, upto=upto.readings, limit=limit
    )
    journal, journal_more = await _journal(
        db, scope, where=where, after=after.journal, upto=upto.journal, limit=limit
    )
    return FeedPage(readings, readings_more, journal, journal_more)
