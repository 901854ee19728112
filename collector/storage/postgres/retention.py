"""Retention on PostgreSQL: an expired month of readings, or of rollups, is dropped whole.

The rollups of a month (`readings_1m`, collector.storage.rollups) were folded in as each of
its readings was stored, so dropping the raw partition loses no aggregate; a reading of a
dropped month that arrives later is left out, audited (`retention_state.raw_kept_from`,
collector.storage.block_retention): it could be one the month held, counted again.
Collectors serving the same database may all run retention: they take the partition lock in
turn, and a month another collector dropped meanwhile is simply not there any more.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator

import asyncpg

from collector.storage.block_retention import Cut, prune_with_readings, retention_pass
from collector.storage.postgres.audit import PostgresChain
from collector.storage.postgres.connection import Db, check_url, connecting, translated
from collector.storage.postgres.locks import lock_gateways
from collector.storage.postgres.partitions import (
    existing_months,
    partition_change,
    partition_name,
    rollup_months,
    rollup_partition_name,
)
from collector.storage.retention import PruneReport, RetentionPolicy, expired


async def prune(db: Db, policy: RetentionPolicy, now: float) -> PruneReport:
    """Drop every expired month of readings and rollups, the old feed journal, presence, blocks.

    `db` must not be inside a transaction: each month commits on its own.
    """
    chain = PostgresChain(db)
    readings = functools.partial(_prune_readings, db, chain, policy.rollup_days)
    return await retention_pass(chain, db.transaction, policy, now, readings)


async def _prune_readings(
    db: Db, chain: PostgresChain, rollup_days: float | None, cut: Cut, raw_days: float
) -> PruneReport:
    at, kept = cut.at, cut.kept
    dropped: list[str] = []
    rolled = 0
    for month in expired(await existing_months(db), at, raw_days):
        async with partition_change(db):
            if month not in await existing_months(db):
                continue  # another collector dropped it meanwhile
            # Its rollups were folded in as each reading was stored: the raw month can go.
            rolled += int(await db.fetchval(f"SELECT count(*) FROM {partition_name(month)}"))
            await db.execute(f"DROP TABLE {partition_name(month)}")
        dropped.append(partition_name(month))
    gone: list[str] = []
    for month in expired(await rollup_months(db), at, rollup_days):
        async with partition_change(db):
            if month in await existing_months(db):
                # Readings of the month arrived again (late, before the month was marked
                # pruned) after its raw partition went: the rollups go after the readings.
                continue
            await db.execute(f"DROP TABLE IF EXISTS {rollup_partition_name(month)}")
        gone.append(rollup_partition_name(month))
    along = await prune_with_readings(chain, functools.partial(_epoch_transaction, db), kept)
    return dataclasses.replace(
        along,
        raw_months_dropped=tuple(dropped),
        rollup_months_dropped=tuple(gone),
        readings_dropped=rolled,
        held_back_to=cut.held_back_to,
    )


@contextlib.asynccontextmanager
async def _epoch_transaction(db: Db, gateway: str) -> AsyncIterator[None]:
    """A transaction holding `gateway`'s lock: its ingest reads blocks and stream as one."""
    async with db.transaction():
        await lock_gateways(db, (gateway,))
        yield


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
