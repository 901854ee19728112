"""The API's and the exports' reads, answering exactly what the SQLite backend answers.

Same filters, same order, same keyset pages: each list is fetched one row past its limit to
tell whether another page follows. Text keys compare in the "C" collation (see the schema),
so `(gateway, point) > ($1, $2)` agrees with the order Python and SQLite give.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from collector.model import AuditEntry, Reason
from collector.readmodel import (
    MISSING,
    AlarmAfter,
    AlarmFilter,
    AlarmState,
    GapAfter,
    GapRow,
    GapState,
    GatewayAfter,
    GatewayProfile,
    GatewayView,
    Page,
    PointAfter,
    PointMetaRow,
    PointRow,
    ReadingAfter,
    ReadingFilter,
    ReadingRow,
    Scope,
    SourcedReading,
)
from collector.storage import records
from collector.storage.postgres.connection import Db
from collector.storage.postgres.rows import Params, scope_clause

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


def _conditions(clauses: list[str]) -> str:
    return " AND ".join(clauses) or "true"


async def audit(
    db: Db, *, gateway: str | None, reason: Reason | None, limit: int
) -> tuple[AuditEntry, ...]:
    """Audit rows, oldest first."""
    params = Params()
    clauses: list[str] = []
    if gateway is not None:
        clauses.append(f"gateway = {params.add(gateway)}")
    if reason is not None:
        clauses.append(f"reason = {params.add(reason.value)}")
    # Rejections only: admin and command rows speak collector.audit.chain.Action.
    clauses.append("kind = 'rejection'")
    found = await db.fetch(
        "SELECT at, gateway, topic, reason, detail, payload_hash, count FROM audit"
        f" WHERE {_conditions(clauses)} ORDER BY id LIMIT {params.add(limit)}",
        *params.values,
    )
    return tuple(
        AuditEntry(row[0], row[1], row[2], Reason(row[3]), row[4], row[5], int(row[6]))
        for row in found
    )


async def gateway_views(
    db: Db, scope: Scope, *, after: GatewayAfter | None, limit: int
) -> Page[GatewayView]:
    """Gateways with their ingest progress, ordered by id."""
    params = Params()
    start = params.add(after[0] if after else "")
    scope_sql = scope_clause(scope, "g.district", params)
    found = await db.fetch(
        f"{_GATEWAY_VIEW} WHERE g.gateway > {start}{scope_sql}"
        f" ORDER BY g.gateway LIMIT {params.add(limit + 1)}",
        *params.values,
    )
    views = [
        GatewayView(
            gateway=row[0],
            enterprise=row[1],
            district=row[2],
            status_online=row[3],
            status_seen=row[4],
            block_seen=row[5],
            epoch=row[6],
            acked_through=row[7],
            gaps=row[8],
        )
        for row in found
    ]
    return Page.of(views, limit)


async def points(
    db: Db,
    scope: Scope,
    *,
    gateway: str | None,
    quota: str | None,
    after: PointAfter | None,
    limit: int,
) -> Page[PointRow]:
    """Points gateways have reported or described, ordered by (gateway, point).

    The newest meta description wins for quota, unit, name and thresholds; a point only read
    so far shows its latest reading's quota and unit.
    """
    params = Params()
    keys = "SELECT gateway, point FROM latest UNION SELECT gateway, point FROM point_meta"
    if gateway is not None:
        # Narrow both sides before the union; the outer filter stays for clarity.
        only = params.add(gateway)
        keys = (
            f"SELECT gateway, point FROM latest WHERE gateway = {only}"
            f" UNION SELECT gateway, point FROM point_meta WHERE gateway = {only}"
        )
    sql = scope_clause(scope, "g.district", params)
    if gateway is not None:
        sql += f" AND k.gateway = {params.add(gateway)}"
    if quota is not None:
        sql += f" AND coalesce(m.quota, l.quota) = {params.add(quota)}"
    if after is not None:
        sql += f" AND (k.gateway, k.point) > ({params.add(after[0])}, {params.add(after[1])})"
    found = await db.fetch(
        "SELECT k.gateway, k.point, coalesce(m.quota, l.quota), coalesce(m.unit, l.unit),"
        f" m.name, m.device, m.thresholds FROM ({keys}) k"
        " JOIN gateways g ON g.gateway = k.gateway"
        " LEFT JOIN latest l ON l.gateway = k.gateway AND l.point = k.point"
        " LEFT JOIN point_meta m ON m.gateway = k.gateway AND m.point = k.point"
        f" WHERE true{sql} ORDER BY k.gateway, k.point LIMIT {params.add(limit + 1)}",
        *params.values,
    )
    return Page.of(
        [
            PointRow(
                gateway=row[0],
                point=row[1],
                quota=row[2],
                unit=row[3],
                name=row[4],
                device=row[5],
                thresholds={} if row[6] is None else records.thresholds(row[6]),
            )
            for row in found
        ],
        limit,
    )


async def latest(
    db: Db,
    scope: Scope,
    *,
    enterprise: str | None,
    gateway: str | None,
    after: PointAfter | None,
    limit: int,
) -> Page[ReadingRow]:
    """The newest reading of each point, ordered by (gateway, point)."""
    params = Params()
    sql = scope_clause(scope, "g.district", params)
    if enterprise is not None:
        sql += f" AND g.enterprise = {params.add(enterprise)}"
    if gateway is not None:
        sql += f" AND l.gateway = {params.add(gateway)}"
    if after is not None:
        sql += f" AND (l.gateway, l.point) > ({params.add(after[0])}, {params.add(after[1])})"
    found = await db.fetch(
        f"SELECT {records.READING_COLUMNS.replace('r.', 'l.')} FROM latest l"
        f" JOIN gateways g ON g.gateway = l.gateway WHERE true{sql}"
        f" ORDER BY l.gateway, l.point LIMIT {params.add(limit + 1)}",
        *params.values,
    )
    return Page.of([records.reading(row) for row in found], limit)


def _reading_clauses(where: ReadingFilter, after: ReadingAfter | None, params: Params) -> str:
    clauses: list[str] = []
    for column, operator, value in (
        ("r.gateway", "=", where.gateway),
        ("r.point", "=", where.point),
        ("r.t", ">=", where.t_from),
        ("r.t", "<", where.t_to),
    ):
        if value is not None:
            clauses.append(f"{column} {operator} {params.add(value)}")
    if after is not None:
        marks = ", ".join(params.add(part) for part in after)
        clauses.append(f"(r.gateway, r.point, r.t, r.id) > ({marks})")
    return _conditions(clauses)


async def readings(
    db: Db, scope: Scope, where: ReadingFilter, *, after: ReadingAfter | None, limit: int
) -> Page[ReadingRow]:
    """Readings ordered by (gateway, point, t, id)."""
    params = Params()
    conditions = _reading_clauses(where, after, params)
    scope_sql = scope_clause(scope, "g.district", params)
    found = await db.fetch(
        f"SELECT {records.READING_COLUMNS}, r.id FROM readings r"
        f" JOIN gateways g ON g.gateway = r.gateway WHERE {conditions}{scope_sql}"
        f" ORDER BY r.gateway, r.point, r.t, r.id LIMIT {params.add(limit + 1)}",
        *params.values,
    )
    return Page.of([records.reading(row, row[8]) for row in found], limit)


async def alarms(
    db: Db, scope: Scope, where: AlarmFilter, *, after: AlarmAfter | None, limit: int
) -> Page[AlarmState]:
    """Alarms ordered by (since, gateway, alarm_id)."""
    params = Params()
    clauses: list[str] = []
    if where.gateway is not None:
        clauses.append(f"a.gateway = {params.add(where.gateway)}")
    if where.active is True:
        clauses.append("a.raised_at IS NOT NULL AND a.cleared_at IS NULL")
    elif where.active is False:
        clauses.append("(a.raised_at IS NULL OR a.cleared_at IS NOT NULL)")
    if where.t_from is not None:
        clauses.append(f"(a.cleared_at IS NULL OR a.cleared_at >= {params.add(where.t_from)})")
    if where.t_to is not None:
        clauses.append(f"a.since < {params.add(where.t_to)}")
    if after is not None:
        marks = ", ".join(params.add(part) for part in after)
        clauses.append(f"(a.since, a.gateway, a.alarm_id) > ({marks})")
    conditions = _conditions(clauses)
    scope_sql = scope_clause(scope, "g.district", params)
    found = await db.fetch(
        f"SELECT {records.ALARM_COLUMNS} FROM alarms a JOIN gateways g ON g.gateway = a.gateway"
        f" WHERE {conditions}{scope_sql} ORDER BY a.since, a.gateway, a.alarm_id"
        f" LIMIT {params.add(limit + 1)}",
        *params.values,
    )
    return Page.of([records.alarm_state(row) for row in found], limit)


async def gaps(
    db: Db,
    scope: Scope,
    *,
    gateway: str | None,
    state: GapState | None,
    after: GapAfter | None,
    limit: int,
) -> Page[GapRow]:
    """Open holes and stored gap records, ordered by (gateway, id)."""
    params = Params()
    clauses: list[str] = []
    if gateway is not None:
        clauses.append(f"p.gateway = {params.add(gateway)}")
    if state is not None:
        kind = "sequence" if state is GapState.OPEN else "record"
        clauses.append(f"p.kind = {params.add(kind)}")
    if after is not None:
        clauses.append(f"(p.gateway, p.id) > ({params.add(after[0])}, {params.add(after[1])})")
    conditions = _conditions(clauses)
    scope_sql = scope_clause(scope, "g.district", params)
    # An open hole's times and lost readings are unknown.
    found = await db.fetch(
        "SELECT p.gateway, p.kind, CASE p.kind WHEN 'sequence' THEN p.epoch"
        " ELSE p.declared_epoch END, p.from_seq, p.to_seq, p.t_from, p.t_to,"
        " CASE p.kind WHEN 'record' THEN p.lost END, p.reason, p.id"
        " FROM gaps p JOIN gateways g ON g.gateway = p.gateway"
        f" WHERE {conditions}{scope_sql} ORDER BY p.gateway, p.id"
        f" LIMIT {params.add(limit + 1)}",
        *params.values,
    )
    return Page.of(
        [
            GapRow(
                gateway=row[0],
                epoch=row[2],
                from_seq=row[3],
                to_seq=row[4],
                t_from=row[5],
                t_to=row[6],
                lost=row[7],
                reason=MISSING if row[1] == "sequence" else row[8],
                state=GapState.OPEN if row[1] == "sequence" else GapState.CLOSED,
                rowid=row[9],
            )
            for row in found
        ],
        limit,
    )


async def gateway_profile(db: Db, gateway: str) -> GatewayProfile | None:
    """Domain and mine code from the gateway's newest stored block; None without blocks."""
    # The newest block is the top stored seq of the most recently active sequence (its
    # max_seq may be a declared seq that has no block): key lookups.
    row = await db.fetchrow(
        "SELECT b.domain, b.mine_code FROM ingest_state i JOIN blocks b"
        " ON b.gateway = i.gateway AND b.epoch = i.epoch AND b.seq = (SELECT max(x.seq)"
        " FROM blocks x WHERE x.gateway = i.gateway AND x.epoch = i.epoch)"
        " WHERE i.gateway = $1 ORDER BY i.last_seen DESC, i.first_seen DESC LIMIT 1",
        gateway,
    )
    return None if row is None else GatewayProfile(gateway, row[0], row[1])


async def point_metas(db: Db, gateway: str) -> Mapping[str, PointMetaRow]:
    """The newest meta description of each point of a gateway, by point."""
    found = await db.fetch(
        "SELECT gateway, point, quota, unit, name, device, thresholds, issued_at"
        " FROM point_meta WHERE gateway = $1 ORDER BY point",
        gateway,
    )
    return {
        row[1]: PointMetaRow(
            gateway=row[0],
            point=row[1],
            quota=row[2],
            unit=row[3],
            name=row[4],
            device=row[5],
            thresholds=records.thresholds(row[6]),
            issued_at=row[7],
        )
        for row in found
    }


async def sourced_readings(
    db: Db, where: ReadingFilter, *, after: ReadingAfter | None, limit: int
) -> Page[SourcedReading]:
    """Readings with their source block, ordered like `readings`."""
    params = Params()
    conditions = _reading_clauses(where, after, params)
    found = await db.fetch(
        f"SELECT {records.READING_COLUMNS}, r.id, r.epoch, r.seq, r.idx, b.domain, b.mine_code"
        " FROM readings r JOIN blocks b"
        " ON b.gateway = r.gateway AND b.epoch = r.epoch AND b.seq = r.seq"
        f" WHERE {conditions} ORDER BY r.gateway, r.point, r.t, r.id"
        f" LIMIT {params.add(limit + 1)}",
        *params.values,
    )
    return Page.of(
        [
            SourcedReading(records.reading(row, row[8]), row[9], row[10], row[11], row[12], row[13])
            for row in found
        ],
        limit,
    )
