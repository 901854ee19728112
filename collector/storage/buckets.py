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


@dataclass(frozen=True, slots=True)
class _Resume:
    """Where a page resumes in the cursor's series: the bucket, and the label it ended after."""

    index: int
    after: tuple[str, str] | None

    @classmethod
    def of(cls, after: BucketAfter, grid: BucketGrid) -> _Resume:
        index = grid.index_at(after[2])
        label = after[3]
        return cls(index, label) if label is not None else cls(index + 1, None)

    def keeps(self, row: BucketRow, grid: BucketGrid) -> bool:
        """Whether `row` comes after the cursor (the cursor's bucket: after its label)."""
        if self.after is None or grid.index_at(row.t) != self.index:
            return True
        return (row.quota, row.unit) > self.after


async def _fill(
    queries: BucketQueries,
    grid: BucketGrid,
    series: PointAfter,
    *,
    resume: _Resume | None,
    found: list[BucketRow],
    wanted: int,
) -> None:
    """Append buckets of one series to `found` until it holds `wanted` or the series ends."""
    index = None if resume is None else resume.index
    while len(found) < wanted:
        first = await queries.first_bucket(series, index)
        if first is None:
            return
        # At most the buckets still wanted: the window never spans more of the index (a
        # bucket in which the point changed quota or unit gives a row per label: more).
        end = first + (wanted - len(found))
        rows = await queries.aggregate(series, first, end)
        found.extend(r for r in rows if resume is None or resume.keeps(r, grid))
        index = end


async def bucket_page(
    queries: BucketQueries, grid: BucketGrid, *, after: BucketAfter | None, limit: int
) -> Page[BucketRow]:
    """One page of buckets ordered by (gateway, point, bucket start, quota, unit) after `after`."""
    wanted = limit + 1  # one past the page tells whether another follows
    found: list[BucketRow] = []
    resumed: PointAfter | None = None if after is None else (after[0], after[1])
    resume = None if after is None else _Resume.of(after, grid)
    position, inclusive = resumed, True  # the cursor's series may hold more buckets
    while len(found) < wanted:
        batch = await queries.series(position, inclusive=inclusive, limit=SERIES_BATCH)
        for series in batch:
            here = resume if series == resumed else None
            await _fill(queries, grid, series, resume=here, found=found, wanted=wanted)
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
    """Whether the per-minute rollups give the buckets the readings would.

    They do when every bucket and both ends of the filter fall on whole minutes: then each
    bucket is a union of whole minutes (collector.storage.rollups). The same buckets, with
    the same `count`, `min`, `max`, `last`, quota and unit, exactly; `avg` to within the
    rounding of a float sum. Both paths add the same values as doubles, in another order (the
    rollups per minute and ingest batch, then the minutes; the readings all at once), and
    exact or compensated sums would need a column the rollups do not have. Each path's `avg`
    lies within (count + 1) x 2^-53 x the mean of the values' magnitudes of the exact mean:
    the last digits for readings of one sign and scale (124.46173333333331 from the rollups,
    124.4617333333334 from the readings, exactly 124.46173333333334), the whole value where
    large readings cancel (0.1, 0.2, 0.3, 1e16, 1.0, -1e16: 0.1 or 0.0, exactly 0.2667), so
    up to twice that between the paths (tests/integration/test_bucket_avg_agreement.py). For
    sums past the largest double (garbage near 1.7e308) the paths can differ further: a
    minute's total that went infinite stays so in its bucket.
    """
    minute = int(ROLLUP_SECONDS)
    ends = [t for t in (where.t_from, where.t_to) if t is not None]
    return (
        grid.width % minute == 0
        and grid.offset % minute == 0
        and all(t % ROLLUP_SECONDS == 0 for t in ends)
    )
