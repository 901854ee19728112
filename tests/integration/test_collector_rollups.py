"""`every=` from the per-minute rollups equals `every=` from the raw readings (both backends).

Random readings (mixed quality, some without a value, several blocks, one resent late) are
ingested through a real Mosquitto. For whole-minute grids the storage answers from the
rollups when the filter's ends fall on minutes; moving `from` half a second earlier (no
reading there) makes it aggregate the raw readings instead. Both answers must agree.
"""

from __future__ import annotations

import dataclasses
import math
import random

import asyncpg
import pytest

from collector.readmodel import EVERYTHING, BucketGrid, BucketRow, ReadingFilter
from collector.storage.buckets import rollups_answer
from collector.storage.months import month_of, month_start, next_month
from collector.storage.postgres.partitions import partition_name
from collector.storage.postgres.schema import SCHEMA_VERSION as POSTGRES_SCHEMA
from collector.storage.postgres.schema import upgrade as postgres_upgrade
from specs.records import Quality, Reading, iso_time
from tests.support.collector_client import BASE_TIME
from tests.support.collector_env import CollectorEnv
from tests.support.postgres import PostgresDatabases, apply_first_migrations, sql_rows

START = BASE_TIME - BASE_TIME % 86_400  # a UTC midnight
HOURS = 3


def _readings(rng: random.Random) -> list[Reading]:
    found = []
    for point in ("T001-LT-01", "T002-LT-01"):
        t = START + rng.uniform(0, 30)
        while t < START + HOURS * 3600:
            quality = rng.choice([Quality.GOOD] * 6 + [Quality.UNCERTAIN, Quality.BAD])
            value = None if rng.random() < 0.05 else round(rng.uniform(-5, 50), 3)
            found.append(Reading(point, "WHP-LT", iso_time(t), value, "m", quality))
            t += rng.choice([1.0, 7.5, 30.0, 95.0])
    return found


async def _all(env: CollectorEnv, where: ReadingFilter, grid: BucketGrid) -> list[BucketRow]:
    rows: list[BucketRow] = []
    after = None
    while True:
        page = await env.storage.buckets(EVERYTHING, where, grid, after=after, limit=97)
        rows.extend(page.items)
        if not page.more:
            return rows
        last = page.items[-1]
        after = (last.gateway, last.point, last.t, (last.quota, last.unit))


def _same(one: BucketRow, other: BucketRow) -> bool:
    """Equal, the average within float rounding (a sum of sums vs one sum)."""
    if one.avg is None or other.avg is None:
        return one == other
    close = math.isclose(one.avg, other.avg, rel_tol=1e-12, abs_tol=1e-9)
    return close and dataclasses.replace(one, avg=other.avg) == other


@pytest.mark.parametrize(
    ("width", "offset"),
    [(60, 0), (300, 0), (3600, 0), (86_400, 28_800), (600, -19_800)],
)
async def test_rollup_buckets_equal_raw_buckets(env: CollectorEnv, width: int, offset: int) -> None:
    readings = _readings(random.Random(width + offset))
    blocks = [readings[i : i + 400] for i in range(0, len(readings), 400)]
    # The second block arrives last: its minutes are folded into rollups already held.
    order = [0, *range(2, len(blocks)), 1]
    for seq, index in enumerate(order, start=1):
        await env.link.send(seq, records=blocks[index])
        await env.link.next_ack()
    grid = BucketGrid(width, offset)
    end = START + HOURS * 3600 + 86_400
    aligned = ReadingFilter(gateway=env.gateway.gateway, t_from=START - 86_400, t_to=end)
    unaligned = ReadingFilter(gateway=env.gateway.gateway, t_from=START - 86_400.5, t_to=end)
    assert rollups_answer(grid, aligned)
    assert not rollups_answer(grid, unaligned)
    from_rollups = await _all(env, aligned, grid)
    from_readings = await _all(env, unaligned, grid)
    assert len(from_rollups) == len(from_readings) > 0
    for rolled, raw in zip(from_rollups, from_readings, strict=True):
        assert _same(rolled, raw), (rolled, raw)


HUGE = 1.7e308  # near the largest double: an instrument's garbage, stored out_of_range


async def test_sums_past_the_largest_double_neither_stop_ingest_nor_the_buckets(
    env: CollectorEnv,
) -> None:
    """Found by a hostile tester: on PostgreSQL, float8 addition raises on overflow where
    SQLite and Python give infinity. A second reading of 1.7e308 in one minute, sent in a
    later block, failed its batch for good ('value out of range: overflow' folding the
    minute's total: never ACKed, resent and failing again); two such minutes in one hour made
    every=1h fail the same way, from the rollups and from the raw readings."""
    minute = START + 600
    blocks = [[_huge(minute + 1)], [_huge(minute + 2)], [_huge(minute + 61)]]
    for seq, records in enumerate(blocks, start=1):
        await env.link.send(seq, records=records)
        signed = await env.link.next_ack()
        assert signed.ack.acked_through == seq
    where = ReadingFilter(gateway=env.gateway.gateway, t_from=START, t_to=START + 7200)
    # The sum of the first minute is past any double: its average is not a number there.
    minutes = await _all(env, where, BucketGrid(60, 0))
    assert [(row.count, row.min, row.max, row.last) for row in minutes] == [
        (2, HUGE, HUGE, HUGE),
        (1, HUGE, HUGE, HUGE),
    ]
    assert [row.avg for row in minutes] == [math.inf, HUGE]
    # Whether the hour is read from the rollups or the raw readings, on either backend, its
    # sum is past the largest double too: no average (PostgreSQL's raw readings gave 1.7e308).
    for start in (START, START - 0.5):  # from the rollups, then from the raw readings
        unaligned = dataclasses.replace(where, t_from=start)
        [hour] = await _all(env, unaligned, BucketGrid(3600, 0))
        assert (hour.count, hour.min, hour.max, hour.last) == (3, HUGE, HUGE, HUGE)
        assert hour.avg == math.inf, start


def _huge(t: float) -> Reading:
    return Reading("T001-LT-01", "WHP-LT", iso_time(t), HUGE, "m", Quality.GOOD)


async def test_migration_2_rolls_up_sums_past_the_largest_double(
    postgres_databases: PostgresDatabases,
) -> None:
    """A schema 1 database holding two readings of 1.7e308 in one minute upgrades, their
    minute's total infinite as the live fold makes it: the first fill's sum(v) raised 'value
    out of range: overflow', and the collector could not upgrade that database at all."""
    url = postgres_databases.create(migrated=False)
    try:
        db = await asyncpg.connect(url)
        try:
            await apply_first_migrations(db, 1)
            month = month_of(START)  # the partition a collector of schema 1 made for START
            await db.execute(
                f"CREATE TABLE {partition_name(month)} PARTITION OF readings FOR VALUES"
                f" FROM ({month_start(month)!r}) TO ({month_start(next_month(month))!r})"
            )
            await db.executemany(
                "INSERT INTO readings (gateway, epoch, seq, idx, point, quota, t, value, unit,"
                " quality, flags)"
                " VALUES ('gw', 'e', 1, $1, 'P', 'WHP-LT', $2, $3, 'm', 'good', '')",
                [
                    (0, START + 1, HUGE),
                    (1, START + 2, HUGE),
                    (2, START + 61, HUGE),
                    (3, START + 62, 1.5),
                ],
            )
        finally:
            await db.close()
        assert await postgres_upgrade(url) == (1, POSTGRES_SCHEMA)
        rollups = await sql_rows(url, "SELECT minute, n, total FROM readings_1m ORDER BY minute")
        assert [tuple(row) for row in rollups] == [
            (START, 2, math.inf),
            (START + 60, 2, HUGE + 1.5),
        ]
    finally:
        postgres_databases.drop(url)
