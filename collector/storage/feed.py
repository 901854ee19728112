"""The live feed's read side once for both backends: the head, and pages by id.

Pages of readings and journal rows, as `collector.storage.capabilities.FeedJournal` reads them.
A backend gives its two statements (`FeedStatements`, with `?` placeholders) and how a read
reaches it (`Fetch`); why its ids may be trusted up to the head is its own (SQLite: one writer;
PostgreSQL: the feed lock, `collector.storage.postgres.feed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from collector.feed.core import (
    FeedFilter,
    FeedKind,
    FeedPage,
    FeedPosition,
    JournalRow,
    journal_event,
    written_active,
)
from collector.readmodel import ReadingRow, Scope
from collector.storage.queries import Fetch, scope_clause
from collector.storage.records import Row, reading


@dataclass(frozen=True, slots=True)
class FeedStatements:
    """A backend's feed reads: each ends `WHERE <id> > ? AND <id> <= ?`.

    `readings` selects READING_COLUMNS then `r.id` from `readings r` joined to `gateways g`;
    `journal` selects id, readings_through, kind, gateway, payload, enterprise, district, at
    and active from `feed f` joined to `gateways g`. `unindexed` prefixes the gateway and point
    terms (SQLite's unary `+` keeps them off the series index: a stream walks ids forward).
    """

    readings: str
    journal: str
    issued: str
    """Selects the highest reading id and journal id ever handed out, pruned rows included."""
    alarm_id: str
    """The `alarm_id` of an alarm row's payload (`f.payload`, JSON text), as SQL."""
    unindexed: str = ""


async def feed_head(fetch: Fetch) -> FeedPosition:
    """The newest reading id and journal id, read in one statement (one snapshot)."""
    rows = await fetch(
        "SELECT (SELECT coalesce(max(id), 0) FROM readings),"
        " (SELECT coalesce(max(id), 0) FROM feed)",
        (),
    )
    return FeedPosition(int(rows[0][0]), int(rows[0][1]))


async def feed_issued(fetch: Fetch, statements: FeedStatements) -> FeedPosition:
    """The highest reading id and journal id this database has handed out.

    Not a head to read up to (PostgreSQL hands out ids before their commit), but the bound of
    the positions this database made: retention deletes the oldest journal rows (and, once a
    whole month expires, the newest readings), so a position a client holds may be past the
    head while it is still this database's.
    """
    rows = await fetch(statements.issued, ())
    return FeedPosition(int(rows[0][0]), int(rows[0][1]))


def _filters(where: FeedFilter, column: str) -> tuple[str, list[object]]:
    sql = ""
    params: list[object] = []
    for name, value in (("gateway", where.gateway), ("point", where.point)):
        if value is not None:
            sql += f" AND {column}{name} = ?"
            params.append(value)
    return sql, params


@dataclass(frozen=True, slots=True)
class _FeedRead:
    """One page's reads: readings and journal rows by id, in scope and filter."""

    fetch: Fetch
    statements: FeedStatements
    scope: Scope
    where: FeedFilter
    limit: int

    async def _rows(
        self, select: str, alias: str, bounds: tuple[object, ...]
    ) -> tuple[Sequence[Row], bool]:
        """Rows of `select` (bound by `bounds`) in filter and scope, by `alias`.id; more?"""
        sql, params = _filters(self.where, f"{self.statements.unindexed}{alias}.")
        scope_sql, scope_params = scope_clause(self.scope, "g.district")
        rows = await self.fetch(
            f"{select}{sql}{scope_sql} ORDER BY {alias}.id LIMIT ?",
            (*bounds, *params, *scope_params, self.limit + 1),
        )
        return rows[: self.limit], len(rows) > self.limit

    async def readings(self, after: int, upto: int) -> tuple[tuple[ReadingRow, ...], bool]:
        """Readings with ids in (after, upto], when the filter takes readings; more?"""
        if FeedKind.READING not in self.where.kinds or after >= upto:
            return (), False
        rows, more = await self._rows(self.statements.readings, "r", (after, upto))
        return tuple(reading(row, row[8]) for row in rows), more

    async def journal(self, after: int, upto: int) -> tuple[tuple[JournalRow, ...], bool]:
        """Journal rows of the filter's other kinds with ids in (after, upto]; more?"""
        kinds = sorted(kind.value for kind in self.where.kinds if kind is not FeedKind.READING)
        if not kinds or after >= upto:
            return (), False
        rows, more = await self._rows(
            f"{self.statements.journal} AND f.kind IN ({', '.join('?' * len(kinds))})",
            "f",
            (after, upto, *kinds),
        )
        found = (
            JournalRow(
                id=row[0],
                readings_through=row[1],
                kind=FeedKind(row[2]),
                event=journal_event(FeedKind(row[2]), row[3], row[4]),
                enterprise=row[5],
                district=row[6],
                at=row[7],
                active=written_active(row[8], row[4]) if row[2] == FeedKind.ALARM.value else None,
            )
            for row in rows
        )
        return tuple(found), more


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
    read = _FeedRead(fetch, statements, scope, where, limit)
    readings, readings_more = await read.readings(after.readings, upto.readings)
    journal, journal_more = await read.journal(after.journal, upto.journal)
    return FeedPage(readings, readings_more, journal, journal_more)
