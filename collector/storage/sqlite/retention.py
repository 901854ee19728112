"""Retention on SQLite: roll expired readings up into `readings_1m`, then delete them.

SQLite has no partitions, so the expired readings of each series (gateway, point) go in a
transaction of their own: aggregated into the per-minute rollups (merged with any already
there), then deleted by a range of the (gateway, point, t) index. The cut is always a month
boundary, as on PostgreSQL: a month is kept whole until all of it has expired.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

import aiosqlite

from collector.storage.base import StorageError
from collector.storage.months import Month, month_of, month_start, next_month
from collector.storage.retention import ROLLUP_SECONDS, PruneReport, RetentionPolicy, expired
from collector.storage.sqlite.schema import connect, rollback

# The same columns and meaning as PostgreSQL's readings_1m (collector.storage.postgres.schema).
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
    PRIMARY KEY (gateway, point, minute)
)
"""

# Times are never negative (specs.records bounds them to 1970..2999): CAST truncates = floor.
_ROLL_UP: Final = f"""
INSERT INTO readings_1m AS o
    (gateway, point, minute, quota, unit, n, lo, hi, total, newest_t, last_t, last_value)
SELECT a.gateway, a.point, a.minute, nw.quota, nw.unit, a.n, a.lo, a.hi, a.total,
       a.newest_t, a.last_t, lv.value
FROM (SELECT gateway, point, CAST(t / {ROLLUP_SECONDS!r} AS INTEGER) * {ROLLUP_SECONDS!r} AS minute,
             count(v) AS n, min(v) AS lo, max(v) AS hi, sum(v) AS total, max(t) AS newest_t,
             max(CASE WHEN v IS NOT NULL THEN t END) AS last_t
      FROM (SELECT gateway, point, t, CASE WHEN quality <> 'bad' THEN value END AS v
            FROM readings WHERE gateway = :gateway AND point = :point AND t < :cut)
      GROUP BY minute) AS a
JOIN readings nw ON nw.gateway = a.gateway AND nw.point = a.point AND nw.t = a.newest_t
LEFT JOIN readings lv ON lv.gateway = a.gateway AND lv.point = a.point AND lv.t = a.last_t
WHERE true
ON CONFLICT (gateway, point, minute) DO UPDATE SET
    n = o.n + excluded.n,
    lo = min(coalesce(o.lo, excluded.lo), coalesce(excluded.lo, o.lo)),
    hi = max(coalesce(o.hi, excluded.hi), coalesce(excluded.hi, o.hi)),
    total = CASE WHEN o.total IS NULL THEN excluded.total
                 WHEN excluded.total IS NULL THEN o.total
                 ELSE o.total + excluded.total END,
    quota = CASE WHEN excluded.newest_t >= o.newest_t THEN excluded.quota ELSE o.quota END,
    unit = CASE WHEN excluded.newest_t >= o.newest_t THEN excluded.unit ELSE o.unit END,
    newest_t = max(o.newest_t, excluded.newest_t),
    last_value = CASE WHEN o.last_t IS NULL OR excluded.last_t >= o.last_t
                      THEN coalesce(excluded.last_value, o.last_value) ELSE o.last_value END,
    last_t = max(coalesce(o.last_t, excluded.last_t), coalesce(excluded.last_t, o.last_t))
"""


async def _oldest_per_series(db: aiosqlite.Connection) -> list[tuple[str, str, float]]:
    # One index seek per series: readings has no index on t alone.
    rows = await db.execute_fetchall(
        "SELECT l.gateway, l.point, (SELECT min(r.t) FROM readings r"
        " WHERE r.gateway = l.gateway AND r.point = l.point) FROM latest l"
    )
    return [(str(row[0]), str(row[1]), float(row[2])) for row in rows if row[2] is not None]


def _months_between(first: Month, last: Month) -> list[Month]:
    months, month = [], first
    while month <= last:
        months.append(month)
        month = next_month(month)
    return months


async def _prune(db: aiosqlite.Connection, policy: RetentionPolicy, now: float) -> PruneReport:
    await db.execute(ROLLUP_TABLE)
    dropped: set[Month] = set()
    rolled = written = 0
    for gateway, point, oldest in await _oldest_per_series(db):
        first = month_of(oldest)
        gone = expired(_months_between(first, month_of(now)), now, policy.raw_days)
        if not gone:
            continue
        cut = month_start(next_month(gone[-1]))
        names = {"gateway": gateway, "point": point, "cut": cut}
        await db.execute("BEGIN IMMEDIATE")
        try:
            upserted = await db.execute(_ROLL_UP, names)
            written += upserted.rowcount
            deleted = await db.execute(
                "DELETE FROM readings WHERE gateway = :gateway AND point = :point AND t < :cut",
                names,
            )
            rolled += deleted.rowcount
            await db.execute("COMMIT")
        except BaseException:
            await rollback(db)
            raise
        dropped.update(gone)
    rollup_gone: list[Month] = []
    if policy.rollup_days is not None:
        found = await db.execute_fetchall("SELECT min(minute) FROM readings_1m")
        oldest_rollup = next(iter(found))[0]
        if oldest_rollup is not None:
            months = _months_between(month_of(float(oldest_rollup)), month_of(now))
            rollup_gone = expired(months, now, policy.rollup_days)
            if rollup_gone:
                await db.execute(
                    "DELETE FROM readings_1m WHERE minute < ?",
                    (month_start(next_month(rollup_gone[-1])),),
                )
    return PruneReport(
        tuple(_name("readings", m) for m in sorted(dropped)),
        tuple(_name("readings_1m", m) for m in rollup_gone),
        rolled,
        written,
    )


def _name(table: str, month: Month) -> str:
    return f"{table}_y{month[0]:04d}m{month[1]:02d}"


async def prune(path: Path, policy: RetentionPolicy, now: float) -> PruneReport:
    """Apply `policy` to the SQLite file at `path` on a connection of its own."""
    try:
        db = await connect(path)
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(f"cannot open database {path}: {exc}") from exc
    try:
        return await _prune(db, policy, now)
    except sqlite3.Error as exc:
        raise StorageError(f"retention failed on {path}: {exc}") from exc
    finally:
        await db.close()
