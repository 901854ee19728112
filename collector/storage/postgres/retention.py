"""Retention on PostgreSQL: roll a month of readings up into `readings_1m`, then drop it whole.

Each expired month is one transaction: its rollup partition is made, the month's readings
are aggregated into it per (gateway, point, minute) (merged with rollups already there: a
late reading can bring a dropped month back, and the next run folds it in), and its raw
partition is dropped. A crash in between leaves either both or neither. Collectors serving
the same database may all run retention: they take the partition lock in turn, and a month
another collector dropped meanwhile is simply not there any more.
"""

from __future__ import annotations

import re
from typing import Final

import asyncpg

from collector.storage.months import Month, month_start, next_month
from collector.storage.postgres.connection import Db, check_url, connecting, translated
from collector.storage.postgres.partitions import (
    LOCK_TIMEOUT,
    PARTITION_LOCK,
    existing_months,
    partition_name,
)
from collector.storage.retention import ROLLUP_SECONDS, PruneReport, RetentionPolicy, expired

_ROLLUP_NAME: Final = re.compile(r"readings_1m_y(\d{4})m(\d{2})")


def rollup_partition_name(month: Month) -> str:
    """The rollup partition of `month`: `readings_1m_yYYYYmMM`."""
    year, number = month
    return f"readings_1m_y{year:04d}m{number:02d}"


async def rollup_months(db: Db) -> set[Month]:
    """The months whose rollup partitions exist."""
    rows = await db.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'readings_1m'::regclass"
    )
    return {
        (int(found[1]), int(found[2]))
        for row in rows
        if (found := _ROLLUP_NAME.fullmatch(row[0])) is not None
    }


# The month's values as GET /v1/readings?every= aggregates them: bad quality and null values
# do not count; quota and unit are the newest reading's.
_ROLL_UP: Final = f"""
INSERT INTO readings_1m AS o
    (gateway, point, minute, quota, unit, n, lo, hi, total, newest_t, last_t, last_value)
SELECT gateway, point, minute,
       (array_agg(quota ORDER BY t DESC))[1], (array_agg(unit ORDER BY t DESC))[1],
       count(v), min(v), max(v), sum(v), max(t),
       max(t) FILTER (WHERE v IS NOT NULL),
       (array_agg(v ORDER BY t DESC) FILTER (WHERE v IS NOT NULL))[1]
FROM (SELECT gateway, point, floor(t / {ROLLUP_SECONDS!r}) * {ROLLUP_SECONDS!r} AS minute,
             quota, unit, t, CASE WHEN quality <> 'bad' THEN value END AS v
      FROM {{partition}}) AS r
GROUP BY gateway, point, minute
ON CONFLICT (gateway, point, minute) DO UPDATE SET
    n = o.n + excluded.n,
    lo = least(o.lo, excluded.lo),
    hi = greatest(o.hi, excluded.hi),
    total = CASE WHEN o.total IS NULL THEN excluded.total
                 WHEN excluded.total IS NULL THEN o.total
                 ELSE o.total + excluded.total END,
    quota = CASE WHEN excluded.newest_t >= o.newest_t THEN excluded.quota ELSE o.quota END,
    unit = CASE WHEN excluded.newest_t >= o.newest_t THEN excluded.unit ELSE o.unit END,
    newest_t = greatest(o.newest_t, excluded.newest_t),
    last_value = CASE WHEN o.last_t IS NULL OR excluded.last_t >= o.last_t
                      THEN coalesce(excluded.last_value, o.last_value) ELSE o.last_value END,
    last_t = greatest(o.last_t, excluded.last_t)
"""


async def _roll_up_and_drop(db: Db, month: Month) -> tuple[int, int]:
    """One month: (readings rolled up, rollup rows written). `db` is in a transaction."""
    low, high = month_start(month), month_start(next_month(month))
    await db.execute(
        f"CREATE TABLE IF NOT EXISTS {rollup_partition_name(month)} PARTITION OF readings_1m"
        f" FOR VALUES FROM ({low!r}) TO ({high!r})"
    )
    raw = partition_name(month)
    readings = int(await db.fetchval(f"SELECT count(*) FROM {raw}"))
    status = await db.execute(_ROLL_UP.replace("{partition}", raw))
    await db.execute(f"DROP TABLE {raw}")
    return readings, int(status.rsplit(" ", 1)[1])


async def prune(db: Db, policy: RetentionPolicy, now: float) -> PruneReport:
    """Roll up and drop every expired month of readings; drop expired rollup months.

    `db` must not be inside a transaction: each month commits on its own.
    """
    dropped: list[str] = []
    rolled = written = 0
    for month in expired(await existing_months(db), now, policy.raw_days):
        async with db.transaction():
            await db.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            await db.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
            if month not in await existing_months(db):
                continue  # another collector dropped it meanwhile
            readings, rows = await _roll_up_and_drop(db, month)
        dropped.append(partition_name(month))
        rolled += readings
        written += rows
    gone: list[str] = []
    for month in expired(await rollup_months(db), now, policy.rollup_days):
        async with db.transaction():
            await db.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            await db.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
            await db.execute(f"DROP TABLE IF EXISTS {rollup_partition_name(month)}")
        gone.append(rollup_partition_name(month))
    return PruneReport(tuple(dropped), tuple(gone), rolled, written)


async def prune_database(url: str, policy: RetentionPolicy, now: float) -> PruneReport:
    """Apply `policy` to the database at `url` on a connection of its own.

    Collectors serving the database learn of dropped months when a late reading finds no
    partition (their partition cache then starts again).
    """
    check_url(url)
    with connecting(url):
        db: Db = await asyncpg.connect(url)
    try:
        with translated("retention", url):
            return await prune(db, policy, now)
    finally:
        await db.close()
