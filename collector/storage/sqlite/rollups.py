"""Per-minute rollups on SQLite: the table, its first fill, and folding a batch into it.

The same columns and merge as PostgreSQL's `readings_1m` (collector.storage.rollups).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import aiosqlite

from collector.storage.rollups import MinuteRollup, fold_statement, rollup_rows

ROLLUP_TABLE: Final = """
CREATE TABLE IF NOT EXISTS readings_1m (
    gateway    TEXT NOT NULL,
    point      TEXT NOT NULL,
    minute     REAL NOT NULL,
    quota      TEXT NOT NULL,
    unit       TEXT NOT NULL,
    n          INTEGER NOT NULL,
    lo         REAL,
    hi         REAL,
    total      REAL,
    newest_t   REAL NOT NULL,
    last_t     REAL,
    last_value REAL,
    PRIMARY KEY (gateway, point, minute, quota, unit)
)
"""

# The readings stored before rollups existed, rolled up once (schema 8; a minute that held
# two quotas or units is split by schema 17's rebuild, collector.storage.rollup_split).
# Times are never negative (specs.records bounds them to 1970..2999), so CAST truncating is floor.
FIRST_FILL: Final = """
INSERT INTO readings_1m
    (gateway, point, minute, quota, unit, n, lo, hi, total, newest_t, last_t, last_value)
SELECT a.gateway, a.point, a.minute, nw.quota, nw.unit, a.n, a.lo, a.hi, a.total,
       a.newest_t, a.last_t, lv.value
FROM (SELECT gateway, point, CAST(t / 60 AS INTEGER) * 60.0 AS minute,
             count(v) AS n, min(v) AS lo, max(v) AS hi, sum(v) AS total, max(t) AS newest_t,
             max(CASE WHEN v IS NOT NULL THEN t END) AS last_t
      FROM (SELECT gateway, point, t, CASE WHEN quality <> 'bad' THEN value END AS v
            FROM readings)
      GROUP BY gateway, point, minute) AS a
JOIN readings nw ON nw.gateway = a.gateway AND nw.point = a.point AND nw.t = a.newest_t
LEFT JOIN readings lv ON lv.gateway = a.gateway AND lv.point = a.point AND lv.t = a.last_t
"""

# PostgreSQL's least/greatest skip a NULL; SQLite's min/max return it (hence the coalesce).
_FOLD: Final = fold_statement(
    rows="VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", smaller="min", larger="max"
)


async def fold_rollups(db: aiosqlite.Connection, rollups: Sequence[MinuteRollup]) -> None:
    """Merge a batch's per-minute rollups into the held ones (inside the ingest transaction)."""
    await db.executemany(_FOLD, rollup_rows(rollups))
