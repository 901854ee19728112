"""The aggregates of GET /v1/quality on PostgreSQL: SQLite's statement, one per page of groups.

Online seconds come from the presence intervals, expected readings from the poll periods in
`point_meta`, received and late readings from a range scan per point (the series index) with
each reading's block (its primary key): the database adds up, Python only divides. Where
SQLite's dialect differs: least/greatest for its two-argument min/max, trunc for its CAST to
INTEGER (both truncate the positive quotient), and a FILTER count for its sum of booleans.
"""

from __future__ import annotations

from typing import Final

from collector.quality.core import LATE_AFTER, QualityCounts, QualityFilter, QualityGroup
from collector.readmodel import Page, Scope
from collector.storage.postgres.connection import Db
from collector.storage.postgres.rows import Params
from collector.storage.quality import quality_members, quality_page

# $1 start, $2 end, $3 late_after, $4 limit + 1 (Params adds them first, in this order).
_AGGREGATES: Final = """
keys AS (SELECT DISTINCT k FROM members ORDER BY k LIMIT $4),
chosen AS (SELECT m.gateway, m.k FROM members m JOIN keys USING (k)),
online AS (
    SELECT p.gateway, sum(least(p.until, $2) - greatest(p.since, $1)) AS seconds
    FROM chosen c JOIN presence p ON p.gateway = c.gateway
    WHERE p.until > $1 AND p.since < $2
    GROUP BY p.gateway
),
expected AS (
    SELECT m.gateway, sum(trunc(($2::float8 - $1::float8) / m.poll)::bigint) AS n
    FROM chosen c JOIN point_meta m ON m.gateway = c.gateway
    WHERE m.poll > 0
    GROUP BY m.gateway
),
got AS (
    SELECT m.gateway, count(*) AS n, count(*) FILTER (WHERE b.received_at - r.t > $3) AS late
    FROM chosen c
    JOIN point_meta m ON m.gateway = c.gateway AND m.poll > 0
    JOIN readings r ON r.gateway = m.gateway AND r.point = m.point
        AND r.t >= $1 AND r.t < $2
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
    db: Db,
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
    params = Params()
    for bound in (start, end, LATE_AFTER):
        params.add(float(bound))
    params.add(limit + 1)
    members = quality_members(scope, where, group, after, params.add)
    found = await db.fetch(f"WITH members AS ({members}),{_AGGREGATES}", *params.values)
    return quality_page(found, limit)
