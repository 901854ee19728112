"""The API's and the exports' reads, once for both backends.

Each query builds its SQL with `?` placeholders and decodes the rows it gets back; a backend
only runs it (`Fetch`: SQLite as it is, PostgreSQL with the placeholders numbered). Same
filters, same order, same keyset pages on both: each list is fetched one row past its limit,
and `Page.of` keeps `limit` and tells whether more follow. Text keys compare by code point on
both (PostgreSQL's columns use the "C" collation), so `(gateway, point) > (?, ?)` agrees with
the order Python gives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, Protocol, TypeVar

from collector.model import AuditEntry, Reason, StreamState
from collector.readmodel import (
    MISSING,
    AlarmAfter,
    AlarmFilter,
    AlarmState,
    GapAfter,
    GapRow,
    GapState,
    GatewayAfter,
    GatewayView,
    Page,
    PointAfter,
    PointRow,
    ReadingAfter,
    ReadingFilter,
    ReadingRow,
    Scope,
)
from collector.storage.records import (
    ACKED_BLOCK,
    ALARM_COLUMNS,
    READING_COLUMNS,
    STREAM_COLUMNS,
    Row,
    alarm_state,
    reading,
    stream_state,
    thresholds,
)

T = TypeVar("T")

_GATEWAY_VIEW: Final = """
SELECT g.gateway, g.enterprise, g.district, s.online, s.last_seen,
       (SELECT max(nullif(i.last_seen, 0)) FROM ingest_state i WHERE i.gateway = g.gateway),
       cur.epoch, cur.acked_through,
       (SELECT count(*) FROM gaps p WHERE p.gateway = g.gateway AND p.kind = 'sequence')
FROM gateways g
LEFT JOIN gateway_status s ON s.gateway = g.gateway
LEFT JOIN ingest_state cur ON cur.gateway = g.gateway AND cur.epoch = (
    SELECT i.epoch FROM ingest_state i WHERE i.gateway = g.gateway
    ORDER BY i.first_seen DESC, i.epoch DESC LIMIT 1)
"""


class Fetch(Protocol):
    """Run one statement with `?` placeholders on a backend's connection; its rows."""

    async def __call__(self, sql: str, params: Sequence[object], /) -> Sequence[Row]:
        """The rows `sql` gives with `params`."""


def scope_clause(scope: Scope, column: str) -> tuple[str, list[object]]:
    """`AND column IN (...)` for a district-limited scope (nothing for `*`)."""
    if scope.districts is None:
        return "", []
    districts = sorted(scope.districts)
    if not districts:
        return " AND false", []
    return f" AND {column} IN ({', '.join('?' * len(districts))})", list(districts)


def where_all(clauses: list[str]) -> str:
    """The clauses joined by AND (`true` for none)."""
    return " AND ".join(clauses) or "true"


def given(*conditions: tuple[str, object]) -> tuple[list[str], list[object]]:
    """The conditions whose value is given (not None), and their values in order.

    A tuple value fills a row comparison's `(?, ...)` (a keyset position), any other one `?`.
    """
    clauses: list[str] = []
    params: list[object] = []
    for clause, value in conditions:
        if value is None:
            continue
        clauses.append(clause)
        if isinstance(value, tuple):
            params.extend(value)
        else:
            params.append(value)
    return clauses, params


async def scoped_page(
    fetch: Fetch,
    select: str,
    where: tuple[list[str], Sequence[object]],
    scope: Scope,
    *,
    order: str,
    limit: int,
    decode: Callable[[Row], T],
) -> Page[T]:
    """One keyset page of `select` (joined to `gateways g`) in `scope`, ordered by `order`.

    `where` holds the clauses every row meets and their params; the rows are fetched one past
    `limit` and decoded by `decode`.
    """
    clauses, params = where
    scope_sql, scope_params = scope_clause(scope, "g.district")
    rows = await fetch(
        f"{select} WHERE {where_all(clauses)}{scope_sql} ORDER BY {order} LIMIT ?",
        (*params, *scope_params, limit + 1),
    )
    return Page.of([decode(row) for row in rows], limit)


def reading_clauses(
    where: ReadingFilter, after: ReadingAfter | None
) -> tuple[list[str], list[object]]:
    """The conditions on readings `r` a filter and a keyset position make, and their params."""
    return given(
        ("r.gateway = ?", where.gateway),
        ("r.point = ?", where.point),
        ("r.t >= ?", where.t_from),
        ("r.t < ?", where.t_to),
        ("(r.gateway, r.point, r.t, r.id) > (?, ?, ?, ?)", after),
    )


async def stream(fetch: Fetch, gateway: str, epoch: str) -> StreamState | None:
    """The stored progress of one sequence, with the hash of the block at acked_through."""
    rows = await fetch(
        f"SELECT {STREAM_COLUMNS} FROM ingest_state s {ACKED_BLOCK}"
        " WHERE s.gateway = ? AND s.epoch = ?",
        (gateway, epoch),
    )
    return next((stream_state(row) for row in rows), None)


async def audit(
    fetch: Fetch,
    *,
    gateway: str | None = None,
    reason: Reason | None = None,
    limit: int = 1000,
) -> tuple[AuditEntry, ...]:
    """Audit rows, oldest first."""
    clauses, params = given(
        ("gateway = ?", gateway), ("reason = ?", None if reason is None else reason.value)
    )
    # Rejections only: admin and command rows speak collector.audit.chain.Action.
    clauses.append("kind = 'rejection'")
    rows = await fetch(
        "SELECT at, gateway, topic, reason, detail, payload_hash, count FROM audit"
        f" WHERE {where_all(clauses)} ORDER BY id LIMIT ?",
        (*params, limit),
    )
    return tuple(
        AuditEntry(row[0], row[1], row[2], Reason(row[3]), row[4], row[5], int(row[6]))
        for row in rows
    )


async def gateway_views(
    fetch: Fetch, scope: Scope, *, after: GatewayAfter | None, limit: int
) -> Page[GatewayView]:
    """Gateways with their ingest progress, ordered by id."""
    where = (["g.gateway > ?"], [after[0] if after else ""])
    return await scoped_page(
        fetch, _GATEWAY_VIEW, where, scope, order="g.gateway", limit=limit, decode=_gateway_view
    )


def _gateway_view(row: Row) -> GatewayView:
    return GatewayView(
        gateway=row[0],
        enterprise=row[1],
        district=row[2],
        status_online=None if row[3] is None else bool(row[3]),
        status_seen=row[4],
        block_seen=row[5],
        epoch=row[6],
        acked_through=row[7],
        gaps=row[8],
    )


async def points(
    fetch: Fetch,
    scope: Scope,
    *,
    gateway: str | None,
    quota: str | None,
    after: PointAfter | None,
    limit: int,
) -> Page[PointRow]:
    """Points gateways have reported or described, ordered by (gateway, point).

    The newest meta description wins for quota, unit, name and thresholds; a point only
    read so far shows its latest reading's quota and unit.
    """
    clauses, params = given(
        ("k.gateway = ?", gateway),
        ("coalesce(m.quota, l.quota) = ?", quota),
        ("(k.gateway, k.point) > (?, ?)", after),
    )
    keys = "SELECT gateway, point FROM latest UNION SELECT gateway, point FROM point_meta"
    narrowed: tuple[object, ...] = ()
    if gateway is not None:
        # Narrow both sides before the union; the outer filter stays for clarity.
        keys = (
            "SELECT gateway, point FROM latest WHERE gateway = ?"
            " UNION SELECT gateway, point FROM point_meta WHERE gateway = ?"
        )
        narrowed = (gateway, gateway)
    select = (
        "SELECT k.gateway, k.point, coalesce(m.quota, l.quota), coalesce(m.unit, l.unit),"
        f" m.name, m.device, m.thresholds FROM ({keys}) k"
        " JOIN gateways g ON g.gateway = k.gateway"
        " LEFT JOIN latest l ON l.gateway = k.gateway AND l.point = k.point"
        " LEFT JOIN point_meta m ON m.gateway = k.gateway AND m.point = k.point"
    )
    where = (clauses, [*narrowed, *params])
    return await scoped_page(
        fetch, select, where, scope, order="k.gateway, k.point", limit=limit, decode=_point_row
    )


def _point_row(row: Row) -> PointRow:
    return PointRow(
        gateway=row[0],
        point=row[1],
        quota=row[2],
        unit=row[3],
        name=row[4],
        device=row[5],
        thresholds={} if row[6] is None else thresholds(row[6]),
    )


async def latest(
    fetch: Fetch,
    scope: Scope,
    *,
    enterprise: str | None,
    gateway: str | None,
    after: PointAfter | None,
    limit: int,
) -> Page[ReadingRow]:
    """The newest reading of each point, ordered by (gateway, point)."""
    where = given(
        ("g.enterprise = ?", enterprise),
        ("l.gateway = ?", gateway),
        ("(l.gateway, l.point) > (?, ?)", after),
    )
    select = (
        f"SELECT {READING_COLUMNS.replace('r.', 'l.')} FROM latest l"
        " JOIN gateways g ON g.gateway = l.gateway"
    )
    return await scoped_page(
        fetch, select, where, scope, order="l.gateway, l.point", limit=limit, decode=reading
    )


async def readings(
    fetch: Fetch,
    scope: Scope,
    where: ReadingFilter,
    *,
    after: ReadingAfter | None,
    limit: int,
) -> Page[ReadingRow]:
    """Readings ordered by (gateway, point, t, rowid)."""
    return await scoped_page(
        fetch,
        f"SELECT {READING_COLUMNS}, r.id FROM readings r JOIN gateways g ON g.gateway = r.gateway",
        reading_clauses(where, after),
        scope,
        order="r.gateway, r.point, r.t, r.id",
        limit=limit,
        decode=lambda row: reading(row, row[8]),
    )


async def alarms(
    fetch: Fetch,
    scope: Scope,
    where: AlarmFilter,
    *,
    after: AlarmAfter | None,
    limit: int,
) -> Page[AlarmState]:
    """Alarms ordered by (since, gateway, alarm_id)."""
    clauses, params = given(
        ("a.gateway = ?", where.gateway),
        ("(a.cleared_at IS NULL OR a.cleared_at >= ?)", where.t_from),
        ("a.since < ?", where.t_to),
        ("(a.since, a.gateway, a.alarm_id) > (?, ?, ?)", after),
    )
    # Raised by an event stamped ahead of the collector's clock at arrival: active once its
    # raise is no longer past the clock asking + the allowance (AlarmState.active_at).
    bound = where.ahead_bound
    caught_up = "FALSE" if bound is None else "a.raised_at <= ?"
    if where.active is True:
        clauses.append(
            "a.raised_at IS NOT NULL AND a.cleared_at IS NULL"
            f" AND (NOT a.raise_ahead OR {caught_up})"
        )
    elif where.active is False:
        clauses.append(
            "(a.raised_at IS NULL OR a.cleared_at IS NOT NULL"
            f" OR (a.raise_ahead AND NOT {caught_up}))"
        )
    if where.active is not None and bound is not None:
        params.append(bound)
    return await scoped_page(
        fetch,
        f"SELECT {ALARM_COLUMNS} FROM alarms a JOIN gateways g ON g.gateway = a.gateway",
        (clauses, params),
        scope,
        order="a.since, a.gateway, a.alarm_id",
        limit=limit,
        decode=alarm_state,
    )


async def gaps(
    fetch: Fetch,
    scope: Scope,
    *,
    gateway: str | None,
    state: GapState | None,
    after: GapAfter | None,
    limit: int,
) -> Page[GapRow]:
    """Open holes and stored gap records, ordered by (gateway, rowid)."""
    kind = None if state is None else ("sequence" if state is GapState.OPEN else "record")
    where = given(
        ("p.gateway = ?", gateway), ("p.kind = ?", kind), ("(p.gateway, p.id) > (?, ?)", after)
    )
    # An open hole's times and lost readings are unknown (schema 3 counted its blocks).
    select = (
        "SELECT p.gateway, p.kind, CASE p.kind WHEN 'sequence' THEN p.epoch"
        " ELSE p.declared_epoch END, p.from_seq, p.to_seq, p.t_from, p.t_to,"
        " CASE p.kind WHEN 'record' THEN p.lost END, p.reason, p.id"
        " FROM gaps p JOIN gateways g ON g.gateway = p.gateway"
    )
    return await scoped_page(
        fetch, select, where, scope, order="p.gateway, p.id", limit=limit, decode=_gap_row
    )


def _gap_row(row: Row) -> GapRow:
    sequence = row[1] == "sequence"
    return GapRow(
        gateway=row[0],
        epoch=row[2],
        from_seq=row[3],
        to_seq=row[4],
        t_from=row[5],
        t_to=row[6],
        lost=row[7],
        reason=MISSING if sequence else row[8],
        state=GapState.OPEN if sequence else GapState.CLOSED,
        rowid=row[9],
    )
