"""The aggregates of GET /v1/quality on PostgreSQL: SQLite's statement, one per page of groups.

The rest of the statement is `collector.storage.quality`'s. Online seconds come from the
presence intervals, expected readings from the poll periods in `point_meta`, received and late
readings from a range scan per point (the series index) with each reading's block (its primary
key): the database adds up, Python only divides. Where SQLite's dialect differs: least/greatest
for its two-argument min/max, trunc for its CAST to INTEGER (both truncate the positive
quotient), and a FILTER count for its sum of booleans.
"""

from __future__ import annotations

from typing import Final

AGGREGATES: Final = """
keys AS (SELECT DISTINCT k FROM members ORDER BY k LIMIT :limit),
chosen AS (SELECT m.gateway, m.k FROM members m JOIN keys USING (k)),
online AS (
    SELECT p.gateway, sum(least(p.until, :end) - greatest(p.since, :start)) AS seconds
    FROM chosen c JOIN presence p ON p.gateway = c.gateway
    WHERE p.until > :start AND p.since < :end
    GROUP BY p.gateway
),
expected AS (
    SELECT m.gateway, sum(trunc((:end::float8 - :start::float8) / m.poll)::bigint) AS n
    FROM chosen c JOIN point_meta m ON m.gateway = c.gateway
    WHERE m.poll > 0
    GROUP BY m.gateway
),
got AS (
    SELECT m.gateway, count(*) AS n,
           count(*) FILTER (WHERE b.received_at - r.t > :late_after) AS late
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
