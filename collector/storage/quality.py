"""GET /v1/quality's statement once for both backends, the dialect's words passed in.

`aggregates` is the statement's tail for one dialect (`collector.storage.sqlite.quality`,
`collector.storage.postgres.quality` name their words), naming the window's values `:start`,
`:end`, `:late_after` and `:limit`; the members and the page are this module's too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Final

from collector.quality.core import LATE_AFTER, QualityCounts, QualityFilter, QualityGroup
from collector.readmodel import Page, Scope
from collector.storage.buckets import CURRENT
from collector.storage.queries import Fetch
from collector.storage.records import Row

MAX_EXPECTED: Final = 10**12
"""The most readings one point owes in a window, whatever its poll: a signed meta may say
`poll: 1e-300` (above 0), and the window over it would count past any integer column. 10^12
is a 10 ms poll for 300 years."""

_MARKER = re.compile(r"(?<!:):(start|end|late_after|limit)\b")


def aggregates(*, smaller: str, larger: str, whole_polls: str, late_count: str) -> str:
    """The aggregates after `members`, in a dialect's words.

    Online seconds come from the presence intervals, expected readings from the poll periods
    in `point_meta`, received and late readings from a range scan per point (the series index)
    with each reading's block (its primary key): the database adds up, Python only divides.
    A reading stored ahead of the collector's clock (`CURRENT`) is received in no window, as
    it is in no `every=` bucket: its t is not when it was read.
    `smaller`/`larger` are the two-argument min and max, `whole_polls` the truncated count of
    poll periods in the window, `late_count` the count of readings received late.
    """
    return f"""
keys AS (SELECT DISTINCT k FROM members ORDER BY k LIMIT :limit),
chosen AS (SELECT m.gateway, m.k FROM members m JOIN keys USING (k)),
online AS (
    SELECT p.gateway, sum({smaller}(p.until, :end) - {larger}(p.since, :start)) AS seconds
    FROM chosen c JOIN presence p ON p.gateway = c.gateway
    WHERE p.until > :start AND p.since < :end
    GROUP BY p.gateway
),
expected AS (
    SELECT m.gateway, sum({whole_polls}) AS n
    FROM chosen c JOIN point_meta m ON m.gateway = c.gateway
    WHERE m.poll > 0
    GROUP BY m.gateway
),
got AS (
    SELECT m.gateway, count(*) AS n, {late_count} AS late
    FROM chosen c
    JOIN point_meta m ON m.gateway = c.gateway AND m.poll > 0
    JOIN readings r ON r.gateway = m.gateway AND r.point = m.point
        AND r.t >= :start AND r.t < :end{CURRENT}
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


def quality_members(
    scope: Scope,
    where: QualityFilter,
    group: QualityGroup,
    after: str | None,
    bind: Callable[[object], str],
) -> str:
    """`members`: each gateway in scope and filter with its group key `k`, past `after`."""
    # The group column is one of three fixed names (an enum), never request text.
    members = f"SELECT g.gateway, g.{group.value} AS k FROM gateways g WHERE true"
    for column, value in (
        ("gateway", where.gateway),
        ("enterprise", where.enterprise),
        ("district", where.district),
    ):
        if value is not None:
            members += f" AND g.{column} = {bind(value)}"
    if after is not None:
        members += f" AND g.{group.value} > {bind(after)}"
    if scope.districts is not None:
        marks = [bind(district) for district in sorted(scope.districts)]
        members += f" AND g.district IN ({', '.join(marks)})" if marks else " AND false"
    return members


def quality_page(rows: Sequence[Row], limit: int) -> Page[QualityCounts]:
    """The counts of the aggregate's rows (key, gateways, seconds, expected, received, late)."""
    return Page.of(
        [
            QualityCounts(
                key=row[0],
                gateways=row[1],
                online_seconds=float(row[2]),
                expected=int(row[3]),
                received=int(row[4]),
                late=int(row[5]),
            )
            for row in rows
        ],
        limit,
    )


async def quality_counts(
    fetch: Fetch,
    aggregates: str,
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
    params: list[object] = []

    def bind(value: object) -> str:
        params.append(value)
        return "?"

    members = quality_members(scope, where, group, after, bind)
    window = {"start": float(start), "end": float(end), "late_after": float(LATE_AFTER)}
    window["limit"] = limit + 1
    # Each marker becomes a `?` of its own, bound in the order the text names them.
    sql = _MARKER.sub(lambda found: bind(window[found[1]]), aggregates)
    return quality_page(await fetch(f"WITH members AS ({members}),{sql}", params), limit)
