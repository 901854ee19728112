"""Time buckets of readings on SQLite: the three queries `collector.storage.buckets` pages with.

The bucket of a reading is floor((t + offset) / width), written with CAST because SQLite's
floor() exists only in builds with the math functions. Width and offset are integers of a
validated grid, inlined as literals. Every window is also bounded on `t` (one second wider
than the buckets, so float rounding at an edge cannot drop a reading) so that it is a range
of the (gateway, point, t) index; the bucket condition then decides exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import aiosqlite

from collector.readmodel import BucketGrid, BucketRow, PointAfter
from collector.storage.buckets import CURRENT, LatestSeries, bucket_rows
from collector.storage.float_sums import SQLITE_FLOATS
from collector.storage.queries import Fetch
from collector.storage.rollups import rollup_mean
from collector.storage.sqlite.sql import fetcher

_SLACK = 1.0  # seconds beyond a window's buckets that its `t` bounds admit


def bucket_index_sql(grid: BucketGrid, t: str = "r.t") -> str:
    """SQL for the bucket index of time column `t`: floor((t + offset) / width)."""
    ratio = f"(({t} + ({int(grid.offset)})) / {int(grid.width)}.0)"
    return f"(CAST({ratio} AS INTEGER) - ({ratio} < CAST({ratio} AS INTEGER)))"


_MEAN: Final = SQLITE_FLOATS.mean_or_infinity("v", "nullif(count(v), 0)", "min(v)", "max(v)")


@dataclass(frozen=True, slots=True)
class SqliteBucketQueries(LatestSeries):
    """The bucket queries of one page, on the reader connection."""

    db: aiosqlite.Connection
    grid: BucketGrid

    def _fetch(self) -> Fetch:
        return fetcher(self.db)

    def _time_bounds(self, low: float | None, high: float | None) -> tuple[str, list[object]]:
        """`AND r.t >= ? AND r.t < ?` for the filter narrowed to [low, high)."""
        sql = ""
        params: list[object] = []
        lows = [t for t in (self.where.t_from, low) if t is not None]
        highs = [t for t in (self.where.t_to, high) if t is not None]
        if lows:
            sql += " AND r.t >= ?"
            params.append(max(lows))
        if highs:
            sql += " AND r.t < ?"
            params.append(min(highs))
        return sql, params

    async def first_bucket(self, series: PointAfter, from_index: int | None) -> int | None:
        """The first bucket at or after `from_index` holding a reading: one index seek."""
        index = bucket_index_sql(self.grid)
        low = None if from_index is None else self.grid.start(from_index) - _SLACK
        bounds, params = self._time_bounds(low, None)
        if from_index is not None:
            bounds += f" AND {index} >= ?"
            params.append(from_index)
        return await self._first_index(
            f"SELECT {index} FROM readings r WHERE r.gateway = ? AND r.point = ?{bounds}"
            f"{CURRENT} ORDER BY r.t LIMIT 1",
            (*series, *params),
        )

    async def _first_index(self, query: str, params: Sequence[object]) -> int | None:
        """The bucket index in the one row `query` selects; None when it selects none."""
        for row in await self.db.execute_fetchall(query, params):
            return int(row[0])
        return None

    async def aggregate(self, series: PointAfter, first: int, end: int) -> Sequence[BucketRow]:
        """Buckets first..end-1 of one series, aggregated by one GROUP BY over an index range.

        One row per (bucket, quota, unit), ordered so (byte order): a bucket in which the
        point changed quota or unit never aggregates values of two. `last` is the value at
        the row's newest usable time, found again through the unique (gateway, point, t) index.
        """
        index = bucket_index_sql(self.grid)
        bounds, params = self._time_bounds(
            self.grid.start(first) - _SLACK, self.grid.start(end) + _SLACK
        )
        rows = await self.db.execute_fetchall(
            "SELECT b.k, b.quota, b.unit, b.lo, b.hi, b.mean, last.value, b.n"
            " FROM (SELECT k, quota, unit, count(v) AS n, min(v) AS lo, max(v) AS hi,"
            f" {_MEAN} AS mean,"
            " max(CASE WHEN v IS NOT NULL THEN t END) AS last_t"
            f" FROM (SELECT {index} AS k, r.quota AS quota, r.unit AS unit, r.t AS t,"
            " CASE WHEN r.quality <> 'bad' THEN r.value END AS v"
            f" FROM readings r WHERE r.gateway = ? AND r.point = ?{bounds}{CURRENT}"
            f" AND {index} >= ? AND {index} < ?) GROUP BY k, quota, unit) b"
            " LEFT JOIN readings last ON last.gateway = ? AND last.point = ?"
            " AND last.t = b.last_t"
            " ORDER BY b.k, b.quota, b.unit",
            (*series, *params, first, end, *series),
        )
        return bucket_rows(series, self.grid, rows)


@dataclass(frozen=True, slots=True)
class SqliteRollupBucketQueries(SqliteBucketQueries):
    """The same buckets from the per-minute rollups, for grids made of whole minutes.

    A bucket of whole minutes is the merge of its minutes' rollups (collector.storage.rollups).
    Used only where `rollups_answer` says the answer is the same (`avg` to within float
    rounding); the filter's ends then fall
    on minutes, so the windows need no slack.
    """

    def _minute_bounds(self, low: float | None, high: float | None) -> tuple[str, list[object]]:
        sql, params = self._time_bounds(low, high)
        return sql.replace("r.t", "m.minute"), params

    async def first_bucket(self, series: PointAfter, from_index: int | None) -> int | None:
        """The first bucket at or after `from_index` holding a rollup: one index seek."""
        index = bucket_index_sql(self.grid, "m.minute")
        low = None if from_index is None else self.grid.start(from_index)
        bounds, params = self._minute_bounds(low, None)
        return await self._first_index(
            f"SELECT {index} FROM readings_1m m WHERE m.gateway = ? AND m.point = ?{bounds}"
            " ORDER BY m.minute LIMIT 1",
            (*series, *params),
        )

    async def aggregate(self, series: PointAfter, first: int, end: int) -> Sequence[BucketRow]:
        """Buckets first..end-1 of one series, merged from its minutes' rollups.

        One row per (bucket, quota, unit), as from the readings (the rollups keep them apart);
        `last` is the row's newest minute with a counted value.
        """
        index = bucket_index_sql(self.grid, "m.minute")
        bounds, params = self._minute_bounds(self.grid.start(first), self.grid.start(end))
        rows = await self.db.execute_fetchall(
            "SELECT b.k, b.quota, b.unit, b.lo, b.hi, b.mean, lv.last_value, b.n FROM (SELECT"
            f" {index} AS k, m.quota AS quota, m.unit AS unit, min(m.lo) AS lo, max(m.hi) AS hi,"
            f" {rollup_mean(SQLITE_FLOATS)} AS mean,"
            " sum(m.n) AS n,"
            " max(CASE WHEN m.last_t IS NOT NULL THEN m.minute END) AS last"
            f" FROM readings_1m m WHERE m.gateway = ? AND m.point = ?{bounds}"
            " GROUP BY k, m.quota, m.unit) b"
            " LEFT JOIN readings_1m lv ON lv.gateway = ? AND lv.point = ? AND lv.minute = b.last"
            " AND lv.quota = b.quota AND lv.unit = b.unit"
            " ORDER BY b.k, b.quota, b.unit",
            (*series, *params, *series),
        )
        return bucket_rows(series, self.grid, rows)
