"""The live feed on SQLite, read side: the head and pages of readings and journal rows by id.

Ids are commit-ordered here: one writer at a time, and a new rowid is the highest so far plus
one, so every id up to the head read in one statement is committed and visible. The journal is
written by `journal` inside the ingest transaction.
"""

from __future__ import annotations

import json
from typing import Final

import aiosqlite

from collector.feed.core import (
    FeedFilter,
    FeedKind,
    FeedPage,
    FeedPosition,
    JournalRow,
    journal_event,
)
from collector.readmodel import ReadingRow, Scope
from collector.storage.queries import scope_clause


async def feed_head(db: aiosqlite.Connection) -> FeedPosition:
    """The newest reading id and journal id, read in one statement (one snapshot)."""
    rows = await db.execute_fetchall(
        "SELECT (SELECT coalesce(max(id), 0) FROM readings),"
        " (SELECT coalesce(max(id), 0) FROM feed)"
    )
    row = next(iter(rows))
    return FeedPosition(int(row[0]), int(row[1]))


# CROSS JOIN keeps readings (and feed) the outer loop, and `+` keeps the gateway and point
# terms off the series index: a stream walks ids forward, never a gateway's whole history.
_READINGS: Final = (
    "SELECT r.id, r.gateway, r.point, r.quota, r.t, r.value, r.unit, r.quality, r.flags"
    " FROM readings r CROSS JOIN gateways g ON g.gateway = r.gateway"
    " WHERE r.id > ? AND r.id <= ?"
)
_JOURNAL: Final = (
    "SELECT f.id, f.readings_through, f.kind, f.gateway, f.payload, g.enterprise, g.district"
    " FROM feed f CROSS JOIN gateways g ON g.gateway = f.gateway"
    " WHERE f.id > ? AND f.id <= ?"
)


def _filters(where: FeedFilter, table: str) -> tuple[str, list[object]]:
    sql = ""
    params: list[object] = []
    if where.gateway is not None:
        sql += f" AND +{table}.gateway = ?"
        params.append(where.gateway)
    if where.point is not None:
        sql += f" AND +{table}.point = ?"
        params.append(where.point)
    return sql, params


async def _readings(
    db: aiosqlite.Connection,
    scope: Scope,
    *,
    where: FeedFilter,
    after: int,
    upto: int,
    limit: int,
) -> tuple[tuple[ReadingRow, ...], bool]:
    if FeedKind.READING not in where.kinds or after >= upto:
        return (), False
    sql, params = _filters(where, "r")
    scope_sql, scope_params = scope_clause(scope, "g.district")
    rows = await db.execute_fetchall(
        f"{_READINGS}{sql}{scope_sql} ORDER BY r.id LIMIT ?",
        (after, upto, *params, *scope_params, limit + 1),
    )
    found = [
        ReadingRow(
            gateway=row[1],
            point=row[2],
            quota=row[3],
            t=row[4],
            value=row[5],
            unit=row[6],
            quality=row[7],
            flags=tuple(json.loads(row[8])),
            rowid=row[0],
        )
        for row in rows
    ]
    return tuple(found[:limit]), len(found) > limit


async def _journal(
    db: aiosqlite.Connection,
    scope: Scope,
    *,
    where: FeedFilter,
    after: int,
    upto: int,
    limit: int,
) -> tuple[tuple[JournalRow, ...], bool]:
    kinds = sorted(kind.value for kind in where.kinds if kind is not FeedKind.READING)
    if not kinds or after >= upto:
        return (), False
    sql, params = _filters(where, "f")
    scope_sql, scope_params = scope_clause(scope, "g.district")
    rows = await db.execute_fetchall(
        f"{_JOURNAL} AND f.kind IN ({', '.join('?' * len(kinds))}){sql}{scope_sql}"
        " ORDER BY f.id LIMIT ?",
        (after, upto, *kinds, *params, *scope_params, limit + 1),
    )
    found = [
        JournalRow(
            id=row[0],
            readings_through=row[1],
            kind=FeedKind(row[2]),
            event=journal_event(FeedKind(row[2]), row[3], row[4]),
            enterprise=row[5],
            district=row[6],
        )
        for row in rows
    ]
    return tuple(found[:limit]), len(found) > limit


async def feed_page(
    db: aiosqlite.Connection,
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
