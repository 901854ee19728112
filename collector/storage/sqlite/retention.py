"""Retention on SQLite: expired months of readings and of rollups are deleted.

SQLite has no partitions, so the expired readings of each series (gateway, point) go in a
transaction of their own, a month at a time by a range of the (gateway, point, t) index.
Their per-minute rollups were folded in as they were stored (collector.storage.rollups) and
stay until `rollup_days`. The cut is always a month boundary, as on PostgreSQL: a month is
kept whole until all of it has expired, and a month is named dropped only when it held rows,
as PostgreSQL names the partitions it drops. The blocks of each epoch go in a transaction of
their own too (`collector.storage.block_retention`).
"""

from __future__ import annotations

import dataclasses
import functools
import sqlite3
from pathlib import Path

import aiosqlite

from collector.storage.base import StorageError
from collector.storage.block_retention import Cut, prune_with_readings, retention_pass
from collector.storage.months import Month, month_of, month_start, next_month
from collector.storage.retention import PruneReport, RetentionPolicy, expired
from collector.storage.sqlite.audit import SqliteChain
from collector.storage.sqlite.connection import connect, immediate_transaction


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
    chain = SqliteChain(db)
    return await retention_pass(
        chain,
        lambda: immediate_transaction(db),
        policy,
        now,
        functools.partial(_prune_readings, db, chain, policy.rollup_days),
    )


async def _prune_readings(
    db: aiosqlite.Connection,
    chain: SqliteChain,
    rollup_days: float | None,
    cut: Cut,
    raw_days: float,
) -> PruneReport:
    at, kept = cut.at, cut.kept
    dropped: set[Month] = set()
    deleted = 0
    for gateway, point, oldest in await _oldest_per_series(db):
        gone = expired(_months_between(month_of(oldest), month_of(at)), at, raw_days)
        if not gone:
            continue
        async with immediate_transaction(db):
            # Month by month: a month is named dropped only when it held readings (a series
            # with none in some month between its oldest and the cut names no such month).
            held: list[Month] = []
            for month in gone:
                cursor = await db.execute(
                    "DELETE FROM readings WHERE gateway = ? AND point = ? AND t >= ? AND t < ?",
                    (gateway, point, month_start(month), month_start(next_month(month))),
                )
                deleted += cursor.rowcount
                if cursor.rowcount:
                    held.append(month)
        dropped.update(held)
    along = await prune_with_readings(chain, lambda _: immediate_transaction(db), kept)
    rollup_gone: list[Month] = []
    found = await db.execute_fetchall("SELECT min(minute) FROM readings_1m")
    oldest_rollup = next(iter(found))[0]
    if oldest_rollup is not None:
        months = _months_between(month_of(float(oldest_rollup)), month_of(at))
        expiring = expired(months, at, rollup_days)
        # Named are the months that held rollups (no index on minute alone: the search for a
        # month's first row ends early, in one scan for a month that held none).
        rollup_gone = [month for month in expiring if await _has_rollups(db, month)]
        if expiring:
            await db.execute(
                "DELETE FROM readings_1m WHERE minute < ?",
                (month_start(next_month(expiring[-1])),),
            )
    return dataclasses.replace(
        along,
        raw_months_dropped=tuple(_name("readings", m) for m in sorted(dropped)),
        rollup_months_dropped=tuple(_name("readings_1m", m) for m in rollup_gone),
        readings_dropped=deleted,
        held_back_to=cut.held_back_to,
    )


async def _has_rollups(db: aiosqlite.Connection, month: Month) -> bool:
    found = await db.execute_fetchall(
        "SELECT EXISTS (SELECT 1 FROM readings_1m WHERE minute >= ? AND minute < ?)",
        (month_start(month), month_start(next_month(month))),
    )
    return bool(next(iter(found))[0])


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
