"""The aggregates of GET /v1/quality on SQLite: one statement per page of groups.

Online seconds come from the presence intervals, expected readings from the poll periods in
`point_meta`, received and late readings from a range count per point (the series index) with
each reading's block (its primary key): the database adds up, Python only divides.
"""

from __future__ import annotations

from typing import Final

import aiosqlite

from collector.quality.core import LATE_AFTER, QualityCounts, QualityFilter, QualityGroup
from collector.readmodel import Page, Scope
from collector.storage.quality import quality_members, quality_page

_AGGREGATES: Final = """
keys AS (SELECT DISTINCT k FROM members ORDER BY k LIMIT :limit),
chosen AS (SELECT m.gateway, m.k FROM members m JOIN keys USING (k)),
online AS (
    SELECT p.gateway, sum(min(p.until, :end) - max(p.since, :start)) AS seconds
    FROM chosen c JOIN presence p ON p.gateway = c.gateway
    WHERE p.until > :start AND p.since < :end
    GROUP BY p.gateway
),
expected AS (
    SELECT m.gateway, sum(CAST((:end - :start) / m.poll AS INTEGER)) AS n
    FROM chosen c JOIN point_meta m ON m.gateway = c.gateway
    WHERE m.poll > 0
    GROUP BY m.gateway
),
got AS (
    SELECT m.gateway, count(*) AS n, sum(b.received_at - r.t > :late_after) AS late
    FROM chosen c
    JOIN point_meta m ON m.gateway = c.gateway AND m.poll > 0
    JOIN readings r ON r.gateway = m.gateway AND r.point = m.point
        AND r.t >= :start AND r.t < :end
    JOIN blocks b ON b.gateway = r.gateway AND b.epoch = r.epoch AND b.seq = r.seq
    GROUP BY m.gateway
)
SELECT c.k, count(*), coalesce(sum(o.seconds), 0), coalesce(sum(e.n), 0),
       coalesce(sum(g.n), 0), coalesce(sum(g.late), 0)
FROM chosen c
LEFT JOIN online o ON o.gateway = c.gateway
LEFT JOIN expected e ON e.gateway = c.gateway
LEFT JOIN got g ON g.gateway = c.gateway
GROUP BY c.k ORDER BY c.k
"""


async def quality_counts(
    db: aiosqlite.Connection,
    scope: Scope,
    where: QualityFilter,
    *,
    group: QualityGroup,
    start: float,
    end: float,
    after: str | None,
    limit: int,
) -> Page[QualityCounts]:
    """Per group key (a gateway, enterprise or district id), ascending: counts in [start, end)."""
    params: dict[str, object] = {
        "start": start,
        "end": end,
        "late_after": LATE_AFTER,
        "limit": limit + 1,
    }

    def bind(value: object) -> str:
        name = f"p{len(params)}"
        params[name] = value
        return f":{name}"

    members = quality_members(scope, where, group, after, bind)
    rows = await db.execute_fetchall(f"WITH members AS ({members}),{_AGGREGATES}", params)
    return quality_page(list(rows), limit)
