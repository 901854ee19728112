"""The live feed's read side once for both backends: the head, and pages by id.

Pages of readings and journal rows, as `collector.storage.capabilities.FeedJournal` reads them.
A backend gives its two statements (`FeedStatements`, with `?` placeholders) and how a read
reaches it (`Fetch`); why its ids may be trusted up to the head is its own (SQLite: one writer;
PostgreSQL: the feed lock, `collector.storage.postgres.feed`).
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.feed.core import (
    FeedFilter,
    FeedKind,
    FeedPage,
    FeedPosition,
    JournalRow,
    journal_event,
)
from collector.readmodel import ReadingRow, Scope
from collector.storage.queries import Fetch, scope_clause
from collector.storage.records import reading


@dataclass(frozen=True, slots=True)
class FeedStatements:
    """A backend's feed reads: each ends `WHERE <id> > ? AND <id> <= ?`.

    `readings` selects READING_COLUMNS then `r.id` from `readings r` joined to `gateways g`;
    `journal` selects id, readings_through, kind, gateway, payload, enterprise and district
    from `feed f` joined to `gateways g`. `unindexed` prefixes the gateway and point terms
    (SQLite's unary `+` keeps them off the series index: a stream walks ids forward).
    """

    readings: str
    journal: str
    unindexed: str = ""


async def feed_head(fetch: Fetch) -> FeedPosition:
    """The newest reading id and journal id, read in one statement (one snapshot)."""
    rows = await fetch(
        "SELECT (SELECT coalesce(max(id), 0) FROM readings),"
        " (SELECT coalesce(max(id), 0) FROM feed)",
        (),
    )
    return FeedPosition(int(rows[0][0]), int(rows[0][1]))


def _filters(where: FeedFilter, column: str) -> tuple[str, list[object]]:
    sql = ""
    params: list[object] = []
    for name, value in (("gateway", where.gateway), ("point", where.point)):
        if value is not None:
            sql += f" AND {column}{name} = ?"
            params.append(value)
    return sql, params


async def _readings(
    fetch: Fetch,
    statements: FeedStatements,
    scope: Scope,
    *,
    where: FeedFilter,
    after: int,
    upto: int,
    limit: int,
) -> tuple[tuple[ReadingRow, ...], bool]:
    if FeedKind.READING not in where.kinds or after >= upto:
        return (), False
    sql, params = _filters(where, f"{statements.unindexed}r.")
    scope_sql, scope_params = scope_clause(scope, "g.district")
    rows = await fetch(
        f"{statements.readings}{sql}{scope_sql} ORDER BY r.id LIMIT ?",
        (after, upto, *params, *scope_params, limit + 1),
    )
    found = [reading(row, row[8]) for row in rows]
    return tuple(found[:limit]), len(found) > limit


async def _journal(
    fetch: Fetch,
    statements: FeedStatements,
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
    sql, params = _filters(where, f"{statements.unindexed}f.")
    scope_sql, scope_params = scope_clause(scope, "g.district")
    rows = await fetch(
        f"{statements.journal} AND f.kind IN ({', '.join('?' * len(kinds))}){sql}{scope_sql}"
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
    fetch: Fetch,
    statements: FeedStatements,
    scope: Scope,
    where: FeedFilter,
    *,
    after: FeedPosition,
    upto: FeedPosition,
    limit: int,
) -> FeedPage:
    """Readings and journal rows in scope and filter with ids in (after, upto], ascending."""
    readings, readings_more = await _readings(
        fetch,
        statements,
        scope,
        where=where,
        after=after.readings,
        upto=upto.readings,
        limit=limit,
    )
    journal, journal_more = await _journal(
        fetch,
        statements,
        scope,
        where=where,
        after=after.journal,
        upto=upto.journal,
        limit=limit,
    )
    return FeedPage(readings, readings_more, journal, journal_more)
