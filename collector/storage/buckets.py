"""Pages of time buckets (`GET /v1/readings?every=`) for every backend, from three queries.

The database aggregates (GROUP BY floor((t + offset) / width)); this module only decides
which slice of which series each GROUP BY covers. A single GROUP BY over the whole filter
would aggregate every reading after the cursor on every page, because no index orders by
the bucket expression. Instead a page walks the series (gateway, point) in order and, for
each, asks for the first bucket holding a reading (an index seek) and aggregates at most the
buckets the page still needs, a window of the series' (gateway, point, t) index: a page costs
about its own readings, wherever in the range it starts.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from collector.readmodel import (
    BucketAfter,
    BucketGrid,
    BucketRow,
    Page,
    PointAfter,
    ReadingFilter,
    Scope,
)
from collector.storage.ahead import AHEAD_FLAG
from collector.storage.queries import Fetch, given, scope_clause, where_all
from collector.storage.rollups import ROLLUP_SECONDS

_LIKE_AHEAD: Final = '%"' + AHEAD_FLAG.replace("_", "\\_") + '"%'
CURRENT: Final = f" AND r.flags NOT LIKE '{_LIKE_AHEAD}' ESCAPE '\\'"
"""The raw readings a bucket aggregates: none stored ahead of the collector's clock (its flags,
a JSON list, name collector.storage.ahead's flag, which only the collector sets), as the
per-minute rollups leave them out, so `rollups_answer` stays true: every= counts the same
whether its buckets come from the rollups or from the readings."""

SERIES_BATCH: Final = 200
"""Series (gateway, point) asked for at a time while a page fills."""


class BucketQueries(Protocol):
    """**Protocol**: the three queries of one bucket page, bound to its scope, filter and grid."""

    async def series(
        self, after: PointAfter | None, *, inclusive: bool, limit: int
    ) -> Sequence[PointAfter]:
        """Up to `limit` series in scope that match the filter, ordered, from `after` on."""
        ...

    async def first_bucket(self, series: PointAfter, from_index: int | None) -> int | None:
        """The first bucket index (at or after `from_index`) with a filtered reading of `series`.

        None when there is none.
        """
        ...

    async def aggregate(self, series: PointAfter, first: int, end: int) -> Sequence[BucketRow]:
        """The buckets `first <= index < end` of `series` that hold filtered readings, in order."""
        ...


@dataclass(frozen=True, slots=True)
class LatestSeries(abc.ABC):
    """`BucketQueries.series` once for every backend; a backend's queries say where it runs."""

    scope: Scope
    where: ReadingFilter

    @abc.abstractmethod
    def _fetch(self) -> Fetch:
        """Run a statement with `?` placeholders where the page's other queries run."""

    async def series(
        self, after: PointAfter | None, *, inclusive: bool, limit: int
    ) -> Sequence[PointAfter]:
        """Series in scope from `latest`, which holds one row for every series with readings."""
        clauses, params = given(
            ("l.gateway = ?", self.where.gateway),
            ("l.point = ?", self.where.point),
            (f"(l.gateway, l.point) {'>=' if inclusive else '>'} (?, ?)", after),
        )
        scope_sql, scope_params = scope_clause(self.scope, "g.district")
        rows = await self._fetch()(
            "SELECT l.gateway, l.point FROM latest l JOIN gateways g ON g.gateway = l.gateway"
            f" WHERE {where_all(clauses)}{scope_sql} ORDER BY l.gateway, l.point LIMIT ?",
            (*params, *scope_params, limit),
        )
        return [(str(row[0]), str(row[1])) for row in rows]


async def _fill(
    queries: BucketQueries,
    series: PointAfter,
    from_index: int | None,
    found: list[BucketRow],
    wanted: int,
) -> None:
    """Append buckets of one series to `found` until it holds `wanted` or the series ends."""
    index = from_index
    while len(found) < wanted:
        first = await queries.first_bucket(series, index)
        if first is None:
            return
        # At most the buckets still wanted: the window never spans more of the index.
        end = first + (wanted - len(found))
        found.extend(await queries.aggregate(series, first, end))
        index = end


async def bucket_page(
    queries: BucketQueries, grid: BucketGrid, *, after: BucketAfter | None, limit: int
) -> Page[BucketRow]:
    """One page of buckets ordered by (gateway, point, bucket start), after `after`."""
    wanted = limit + 1  # one past the page tells whether another follows
    found: list[BucketRow] = []
    resumed: PointAfter | None = None if after is None else (after[0], after[1])
    resume_at = None if after is None else grid.index_at(after[2]) + 1
    position, inclusive = resumed, True  # the cursor's series may hold more buckets
    while len(found) < wanted:
        batch = await queries.series(position, inclusive=inclusive, limit=SERIES_BATCH)
        for series in batch:
            await _fill(queries, series, resume_at if series == resumed else None, found, wanted)
            if len(found) >= wanted:
                break
        if len(batch) < SERIES_BATCH:
            break
        position, inclusive = batch[-1], False
    return Page.of(found, limit)


def bucket_rows(series: PointAfter, grid: BucketGrid, rows: Iterable[Any]) -> list[BucketRow]:
    """The rows of a backend's aggregate query as buckets of `series`.

    Every backend selects (bucket index, quota, unit, min, max, avg, last, count), in order.
    """
    return [
        BucketRow(
            gateway=series[0],
            point=series[1],
            quota=row[1],
            unit=row[2],
            t=grid.start(int(row[0])),
            min=row[3],
            max=row[4],
            avg=row[5],
            last=row[6],
            count=int(row[7]),
        )
        for row in rows
    ]


def rollups_answer(grid: BucketGrid, where: ReadingFilter) -> bool:
    """Whether the per-minute rollups give exactly the buckets the readings would.

    They do when every bucket and both ends of the filter fall on whole minutes: then each
    bucket is a union of whole minutes (collector.storage.rollups).
    """
    minute = int(ROLLUP_SECONDS)
    ends = [t for t in (where.t_from, where.t_to) if t is not None]
    return (
        grid.width % minute == 0
        and grid.offset % minute == 0
        and all(t % ROLLUP_SECONDS == 0 for t in ends)
    )
