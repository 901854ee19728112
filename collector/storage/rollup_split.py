"""Rollups keyed by (gateway, point, minute, quota, unit): the rebuild of minutes held mixed.

Until PostgreSQL's migration 13 and SQLite's schema 17 a rollup row was one per (gateway,
point, minute) and took quota and unit from the minute's newest reading: a point re-purposed
mid-minute (a tank level in m becoming a pressure in MPa) had both summed under the newest
label. Now quota and unit are part of the key, and the upgrade rolls up again, from the raw
readings, every minute whose raw readings hold more than one (quota, unit). Minutes whose raw
readings retention has already deleted keep the one row they had (nothing to split them from).
"""

from __future__ import annotations

from typing import Final

from collector.storage.buckets import CURRENT
from collector.storage.float_sums import POSTGRES_FLOATS, SQLITE_FLOATS

_COLUMNS: Final = (
    "gateway, point, minute, quota, unit, n, lo, hi, total, newest_t, last_t, last_value"
)


def _mixed(minute: str) -> str:
    """The (gateway, point, minute) whose current raw readings hold two labels or more."""
    return (
        f"SELECT r.gateway, r.point, {minute} AS minute FROM readings r WHERE 1 = 1{CURRENT}"
        f" GROUP BY r.gateway, r.point, {minute}"
        " HAVING min(r.quota) <> max(r.quota) OR min(r.unit) <> max(r.unit)"
    )


def _values(minute: str) -> str:
    """The current raw readings of the mixed minutes, with their minute and counted value.

    Driven by split_minutes, each mixed minute one seek of readings_by_series (gateway, point,
    t): the range, from 61 s before the minute to 1 s after its end (rounding, SQLite's
    truncation below zero), lets the planner seek; the equality on the minute then keeps
    exactly the readings `minute` puts in it. Joined on (gateway, point) alone, the minute a
    filter, each mixed minute read every reading of its point: quadratic.
    """
    return (
        f"SELECT r.gateway, r.point, {minute} AS minute, r.quota, r.unit, r.t,"
        " CASE WHEN r.quality <> 'bad' THEN r.value END AS v"
        " FROM split_minutes s JOIN readings r ON r.gateway = s.gateway AND r.point = s.point"
        " AND r.t >= s.minute - 61 AND r.t < s.minute + 61"
        f" AND {minute} = s.minute WHERE 1 = 1{CURRENT}"
    )


_KEYED: Final = (
    "CREATE UNIQUE INDEX split_minutes_key ON split_minutes (gateway, point, minute)",
    "ANALYZE split_minutes",
)
"""split_minutes seekable by its key, and its size known to the planner."""


_PG_MINUTE: Final = "floor(r.t / 60) * 60"

POSTGRES_SPLIT: Final = f"""
CREATE TEMPORARY TABLE split_minutes AS {_mixed(_PG_MINUTE)};
{_KEYED[0]};
{_KEYED[1]};
ALTER TABLE readings_1m DROP CONSTRAINT readings_1m_pkey;
ALTER TABLE readings_1m ADD PRIMARY KEY (gateway, point, minute, quota, unit);
DELETE FROM readings_1m o USING split_minutes s
WHERE o.gateway = s.gateway AND o.point = s.point AND o.minute = s.minute;
INSERT INTO readings_1m ({_COLUMNS})
SELECT gateway, point, minute, quota, unit, count(v), min(v), max(v),
       {POSTGRES_FLOATS.sum_or_infinity("v")}, max(t), max(t) FILTER (WHERE v IS NOT NULL),
       (array_agg(v ORDER BY t DESC) FILTER (WHERE v IS NOT NULL))[1]
FROM ({_values(_PG_MINUTE)}) AS r
GROUP BY gateway, point, minute, quota, unit;
DROP TABLE split_minutes;
"""
"""PostgreSQL's migration 13: the new key, and the mixed minutes rolled up again.

The mixed minutes are found (one scan of the raw readings, the longest step) before the
ALTER takes readings_1m ACCESS EXCLUSIVE, so readers of the rollups wait only for the rest."""

_SQLITE_MINUTE: Final = "CAST(r.t / 60 AS INTEGER) * 60.0"

SQLITE_SPLIT: Final = (
    f"CREATE TEMPORARY TABLE split_minutes AS {_mixed(_SQLITE_MINUTE)}",
    *_KEYED,
    (
        "DELETE FROM readings_1m WHERE (gateway, point, minute) IN"
        " (SELECT gateway, point, minute FROM split_minutes)"
    ),
    (
        f"INSERT INTO readings_1m ({_COLUMNS})"
        " SELECT a.gateway, a.point, a.minute, a.quota, a.unit, a.n, a.lo, a.hi, a.total,"
        " a.newest_t, a.last_t, lv.value"
        " FROM (SELECT gateway, point, minute, quota, unit, count(v) AS n, min(v) AS lo,"
        f" max(v) AS hi, {SQLITE_FLOATS.sum_or_infinity('v')} AS total, max(t) AS newest_t,"
        " max(CASE WHEN v IS NOT NULL THEN t END) AS last_t"
        f" FROM ({_values(_SQLITE_MINUTE)}) GROUP BY gateway, point, minute, quota, unit) AS a"
        " LEFT JOIN readings lv ON lv.gateway = a.gateway AND lv.point = a.point"
        " AND lv.t = a.last_t"
    ),
    "DROP TABLE split_minutes",
)
"""SQLite's schema 17, once the table has the new key: the mixed minutes rolled up again."""
