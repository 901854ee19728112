"""Time buckets of readings on PostgreSQL: the queries `collector.storage.buckets` pages with.

They answer exactly what the SQLite backend answers.

The bucket of a reading is floor((t + offset) / width); width and offset are integers of a
validated grid, inlined as literals. Every window is also bounded on `t` (one second wider
than its buckets, so float rounding at an edge cannot drop a reading): a range of the
(gateway, point, t) index that also prunes the monthly partitions; the bucket condition then
decides exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from collector.readmodel import BucketGrid, BucketRow, PointAfter
from collector.storage.buckets import CURRENT, LatestSeries, bucket_rows
from collector.storage.float_sums import POSTGRES_FLOATS
from collector.storage.postgres.connection import Db
from collector.storage.postgres.rows import Params, fetcher
from collector.storage.queries import Fetch
from collector.storage.rollups import rollup_mean

_SLACK = 1.0  # seconds beyond a window's buckets that its `t` bounds admit


def bucket_index_sql(grid: BucketGrid, t: str = "r.t") -> str:
    """SQL for the bucket index of time column `t`: floor((t + offset) / width)."""
    return f"floor(({t} + ({int(grid.offset)})) / {int(grid.width)})::bigint"


_MEAN: Final = POSTGRES_FLOATS.mean_or_infinity("v", "nullif(count(v), 0)", "min(v)", "max(v)")


def _label_order(table: str) -> str:
    """The rows of one bucket in byte order of (quota, unit), as SQLite and Python compare."""
    return f'{table}.quota COLLATE "C", {table}.unit COLLATE "C"'


@dataclass(frozen=True, slots=True)
class PostgresBucketQueries(LatestSeries):
    """The bucket queries of one page, on one pooled connection."""

    db: Db
    grid: BucketGrid

    def _fetch(self) -> Fetch:
        return fetcher(self.db)

    def _time_bounds(
        self, params: Params, low: float | None, high: float | None, column: str = "r.t"
    ) -> str:
        """`AND t >= $n AND t < $m` for the filter narrowed to [low, high)."""
        sql = ""
        lows = [t for t in (self.where.t_from, low) if t is not None]
        highs = [t for t in (self.where.t_to, high) if t is not None]
        if lows:
            sql += f" AND {column} >= {params.add(max(lows))}"
        if highs:
            sql += f" AND {column} < {params.add(min(highs))}"
        return sql

    async def first_bucket(self, series: PointAfter, from_index: int | None) -> int | None:
        """The first bucket at or after `from_index` holding a reading: one index seek."""
        index = bucket_index_sql(self.grid)
        params = Params()
        keys = f"r.gateway = {params.add(series[0])} AND r.point = {params.add(series[1])}"
        low = None if from_index is None else self.grid.start(from_index) - _SLACK
        bounds = self._time_bounds(params, low, None)
        if from_index is not None:
            bounds += f" AND {index} >= {params.add(from_index)}"
        found = await self.db.fetchval(
            f"SELECT {index} FROM readings r WHERE {keys}{bounds}{CURRENT} ORDER BY r.t LIMIT 1",
            *params.values,
        )
        return None if found is None else int(found)

    async def aggregate(self, series: PointAfter, first: int, end: int) -> Sequence[BucketRow]:
        """Buckets first..end-1 of one series, aggregated by one GROUP BY over an index range.

        One row per (bucket, quota, unit), ordered so (byte order): a bucket in which the
        point changed quota or unit never aggregates values of two. `last` is the value at
        the row's newest usable time, found again through the unique (gateway, point, t) index.
        """
        index = bucket_index_sql(self.grid)
        params = Params()
        gateway, point = params.add(series[0]), params.add(series[1])
        low, high = self.grid.start(first) - _SLACK, self.grid.start(end) + _SLACK
        bounds = self._time_bounds(params, low, high)
        # The join repeats the window so that only its partitions are searched.
        last_bounds = self._time_bounds(params, low, high, "last.t")
        found = await self.db.fetch(
            "SELECT b.k, b.quota, b.unit, b.lo, b.hi, b.mean, last.value, b.n"
            " FROM (SELECT k, quota, unit, count(v) AS n, min(v) AS lo, max(v) AS hi,"
            f" {_MEAN} AS mean,"
            " max(t) FILTER (WHERE v IS NOT NULL) AS last_t"
            f" FROM (SELECT {index} AS k, r.quota, r.unit, r.t AS t,"
            " CASE WHEN r.quality <> 'bad' THEN r.value END AS v"
            f" FROM readings r WHERE r.gateway = {gateway} AND r.point = {point}{bounds}{CURRENT}"
            f" AND {index} >= {params.add(first)} AND {index} < {params.add(end)}) AS s"
            " GROUP BY k, quota, unit) AS b"
            f" LEFT JOIN readings last ON last.gateway = {gateway} AND last.point = {point}"
            f" AND last.t = b.last_t{last_bounds}"
            f" ORDER BY b.k, {_label_order('b')}",
            *params.values,
        )
        return bucket_rows(series, self.grid, found)


@dataclass(frozen=True, slots=True)
class PostgresRollupBucketQueries(PostgresBucketQueries):
    """The same buckets from the per-minute rollups, for grids made of whole minutes.

    A bucket of whole minutes is the merge of its minutes' rollups (collector.storage.rollups):
    a month of 1 s readings at `every=1h` reads 43,200 rollup rows instead of 2.6 million
    readings. Used only where `rollups_answer` says the answer is the same (`avg` to within
    float rounding).
    """

    async def first_bucket(self, series: PointAfter, from_index: int | None) -> int | None:
        """The first bucket at or after `from_index` holding a rollup: one index seek."""
        index = bucket_index_sql(self.grid, "m.minute")
        params = Params()
        keys = f"m.gateway = {params.add(series[0])} AND m.point = {params.add(series[1])}"
        low = None if from_index is None else self.grid.start(from_index)
        bounds = self._time_bounds(params, low, None, "m.minute")
        found = await self.db.fetchval(
            f"SELECT {index} FROM readings_1m m WHERE {keys}{bounds} ORDER BY m.minute LIMIT 1",
            *params.values,
        )
        return None if found is None else int(found)

    async def aggregate(self, series: PointAfter, first: int, end: int) -> Sequence[BucketRow]:
        """Buckets first..end-1 of one series, merged from its minutes' rollups.

        One row per (bucket, quota, unit), as from the readings (the rollups keep them apart).
        """
        index = bucket_index_sql(self.grid, "m.minute")
        params = Params()
        keys = f"m.gateway = {params.add(series[0])} AND m.point = {params.add(series[1])}"
        bounds = self._time_bounds(params, self.grid.start(first), self.grid.start(end), "m.minute")
        found = await self.db.fetch(
            f"SELECT {index} AS k, m.quota AS quota, m.unit AS unit,"
            f" min(m.lo), max(m.hi), {rollup_mean(POSTGRES_FLOATS)},"
            " (array_agg(m.last_value ORDER BY m.last_t DESC)"
            " FILTER (WHERE m.last_t IS NOT NULL))[1],"
            " sum(m.n)"
            f" FROM readings_1m m WHERE {keys}{bounds} GROUP BY k, m.quota, m.unit"
            f" ORDER BY k, {_label_order('m')}",
            *params.values,
        )
        return bucket_rows(series, self.grid, found)
