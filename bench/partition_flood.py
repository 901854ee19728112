"""PostgreSQL: another gateway's ingest while one block names every month since 1970.

A gateway whose clock was reset (or a hostile one) seals one block holding a reading in each
month since 1970-01 (683 in December 2026). Each month it names needs two partitions, each made
under an ACCESS EXCLUSIVE lock on its parent (collector/storage/postgres/partitions.py): made in
one transaction, `readings` stayed locked ~70 s and every other collector's ingest waited. Now
an ingest makes at most MONTHS_PER_INGEST months, one a transaction, and leaves a block out while
more are missing (its resend makes the next ones): here collector A tries the block until stored,
while collector B ingests another gateway's live block of one reading after each of A's tries.

Baseline: B's median ingest of the same block with no flood, same run, before it. Target: B's
slowest ingest during the flood at most 50 times that: it waits for one month's two tables at
most, but every ingest slows as partitions multiply (planning over each of them; 683 months:
median 47 -> 252 ms, slowest 1.2 s). Before the change it waited for the whole flood (62 s).
Also reported: A's tries and the partitions (pg_inherits rows: tables and indexes) after.

Result (bench/results.py, `--json PATH`): the times, the ratio; exit 1 when it misses.
Run: `.venv/bin/python -m bench.partition_flood [--months 683]` (about 30 s at the default).
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import os
import statistics
import sys
import time
from typing import Final

import asyncpg

from bench.results import BenchResult, Figure, add_json_argument, finished
from collector.storage.base import StorageError
from collector.storage.postgres import PostgresStorage
from demo.postgres import create_database, drop_database
from tests.support.collector_api import BEIJING, NANCHANG, level, store_blocks
from tests.support.collector_env import register

TARGET: Final = 50.0
BASELINE_RUNS: Final = 10
_BASELINE: Final = f"median of {BASELINE_RUNS} ingests of the same live block, no flood"


def _flood(months: int, now: float) -> list[float]:
    """One time in each of the `months` months from 1970-01 on, all before `now`."""
    times = [
        float(calendar.timegm((1970 + n // 12, n % 12 + 1, 15, 0, 0, 0))) for n in range(months)
    ]
    return [t for t in times if t < now - 86_400 * 31]


async def _run(url: str, months: int) -> tuple[list[float], list[float], int, int]:
    now = time.time()
    flooding = await PostgresStorage.open(url, now=now)
    other = await PostgresStorage.open(url, now=now)
    try:
        await register(flooding, NANCHANG, BEIJING)
        seq = 0

        async def live() -> float:
            nonlocal seq
            seq += 1
            started = time.perf_counter()
            await store_blocks(
                other, BEIJING, {seq: [level(time.time() - 1, 1.0)]}, received=time.time()
            )
            return time.perf_counter() - started

        alone = [await live() for _ in range(BASELINE_RUNS)]
        block = [level(t, 1.0) for t in _flood(months, now)]
        during: list[float] = []
        tries = 0
        while True:
            tries += 1
            flood = asyncio.create_task(store_blocks(flooding, NANCHANG, [block], received=now))
            while not flood.done():  # B's paced load while A's try runs
                during.append(await live())
                await asyncio.sleep(0.05)
            try:
                await flood
            except StorageError:
                continue
            break
        db = await asyncpg.connect(url)
        try:
            made = int(await db.fetchval("SELECT count(*) FROM pg_inherits"))
        finally:
            await db.close()
        return alone, during, tries, made
    finally:
        await flooding.close()
        await other.close()


def main() -> int:
    """Time the other gateway's ingest alone, then during the flood; write the result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--months", type=int, default=683, help="months the block names")
    add_json_argument(parser)
    args = parser.parse_args()
    name = f"ganzhi_bench_partition_flood_{os.getpid()}"
    url = create_database(name)
    try:
        alone, during, tries, made = asyncio.run(_run(url, args.months))
    finally:
        drop_database(name)
    baseline = statistics.median(alone)
    ratio = round(max(during) / baseline, 1)

    def ms(times: list[float]) -> tuple[float, ...]:
        return tuple(round(1000 * t, 1) for t in times)

    result = BenchResult(
        "partition_flood",
        (
            Figure("", "another gateway's ingest, no flood", "ms", ms(alone)),
            Figure("", "another gateway's ingest during the flood", "ms", ms(during)),
            Figure("", "slowest during the flood over the median alone", "x", (ratio,),
                   target=TARGET, direction="at_most", baseline=_BASELINE),
            Figure("", "the flood's tries until stored", "tries", (float(tries),)),
        ),
        notes=(f"{args.months} months: {tries} tries, {made} pg_inherits rows after",),
    )  # fmt: skip
    return finished(args.json, result)


if __name__ == "__main__":
    sys.exit(main())
