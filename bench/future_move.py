"""PostgreSQL: moving a month the clock reached out of `readings_future`, against one read of it.

`readings_future` holds every time after the newest month's partition; a gateway whose RTC
reset to 2099 may have filled it. When the collector's clock reaches the month it starts at,
`Partitions.ensure` makes that month's partition and moves its readings there, holding an
ACCESS EXCLUSIVE lock on `readings` (ingest and queries wait) the whole time
(collector/storage/postgres/partitions.py). Here `--junk` readings of 2099 and `--moving`
readings of each month moved are loaded by INSERT (setup, not measured), then for each repeat
the clock is moved one month on and the move is timed on one connection.

The first move is the first after an upgrade: `readings_future` is loaded as an earlier
version made it, without its index on t, and the collector opened again (which builds that
index CONCURRENTLY, timed apart: writers go on meanwhile) before the clock moves on. The later
moves are those of a collector that made `readings_future` itself.

The same-run baseline is one sequential read of all of `readings_future` (count(*) with index
scans off), timed just before each move: the move over it says how many reads of the
partition the lock is held for. Target: at most 1.5 (one read, plus the rows that move), for
the first move and for the median of the later ones.

Result (bench/results.py, `--json PATH`): open's index build ms, move ms, read ms, the ratios;
exit 1 when a ratio misses.
Run: `.venv/bin/python -m bench.future_move [--junk 2000000] [--repeats 5]` (about a minute
at the defaults, most of it loading).
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
from collector.storage.months import Month, month_start, next_month
from collector.storage.postgres import PostgresStorage
from collector.storage.postgres.partitions import FUTURE, FUTURE_INDEX, Partitions
from demo.postgres import create_database, drop_database

START: Final[Month] = (2027, 1)
STUCK: Final = float(calendar.timegm((2099, 1, 1, 0, 0, 0)))
REPEAT: Final = 5
TARGET: Final = 1.5
_BASELINE: Final = f"one sequential read of {FUTURE}, same run, before each move"

_INSERT: Final = (
    "INSERT INTO readings (gateway, epoch, seq, idx, point, quota, t, value, unit, quality,"
    " flags) SELECT 'bench-gw', 'e1', i, 0, 'p' || (i % 50), 'WHP-LT', $1::float8 + i * $2::float8,"
    " 1.5, 'm', 'good', '[]' FROM generate_series(1, $3::int) i"
)


async def _one_read(db: asyncpg.Connection[asyncpg.Record]) -> float:
    """Seconds to read all of FUTURE once, sequentially (what ATTACH's proof costs)."""
    async with db.transaction():
        for kind in ("indexscan", "indexonlyscan", "bitmapscan"):
            await db.execute(f"SET LOCAL enable_{kind} = off")
        started = time.perf_counter()
        await db.fetchval(f"SELECT count(*) FROM {FUTURE} WHERE t >= 0")
        return time.perf_counter() - started


async def _run(url: str, junk: int, moving: int, repeats: int) -> tuple[list[float], ...]:
    storage = await PostgresStorage.open(url, now=month_start(START))
    await storage.close()
    db = await asyncpg.connect(url)
    try:
        await db.execute(f"DROP INDEX {FUTURE_INDEX}")  # as an earlier version made FUTURE
        await db.execute(_INSERT, STUCK, 1.0, junk)
        started = time.perf_counter()
        storage = await PostgresStorage.open(url, now=month_start(START))  # the upgraded one
        await storage.close()
        build = time.perf_counter() - started
        clock = next_month(START)
        partitions = Partitions()
        moves: list[float] = []
        reads: list[float] = []
        for _ in range(repeats):
            reached = next_month(clock)  # where FUTURE starts while the clock is in `clock`
            await db.execute(_INSERT, month_start(reached), 1.0, moving)
            await db.execute(f"ANALYZE {FUTURE}")  # as autovacuum keeps it
            reads.append(await _one_read(db))
            started = time.perf_counter()
            await partitions.ensure(db, {reached}, reached)  # the clock reached it
            moves.append(time.perf_counter() - started)
            clock = reached
        left = await db.fetchval(f"SELECT count(*) FROM {FUTURE}")
        if left != junk:
            raise SystemExit(f"{FUTURE} holds {left} readings after the moves, not {junk}")
        return [build], moves, reads
    finally:
        await db.close()


def main() -> int:
    """Load, time each move and its baseline, write the result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--junk", type=int, default=2_000_000, help="readings of 2099")
    parser.add_argument("--moving", type=int, default=1000, help="readings of each month moved")
    parser.add_argument("--repeats", type=int, default=REPEAT, help="months moved, each timed")
    add_json_argument(parser)
    args = parser.parse_args()
    name = f"ganzhi_bench_future_move_{os.getpid()}"
    url = create_database(name)
    try:
        build, moves, reads = asyncio.run(_run(url, args.junk, args.moving, max(2, args.repeats)))
    finally:
        drop_database(name)
    ratios = tuple(round(move / read, 2) for move, read in zip(moves, reads, strict=True))

    def ms(times: list[float]) -> tuple[float, ...]:
        return tuple(round(1000 * t, 1) for t in times)

    result = BenchResult(
        "future_move",
        (
            Figure("", f"open after the upgrade (builds {FUTURE_INDEX} concurrently)", "ms",
                   ms(build)),
            Figure("", f"move of a month ({args.moving:,} readings; the first after the upgrade)",
                   "ms", ms(moves)),
            Figure("", f"one read of {FUTURE} ({args.junk:,} readings of 2099)", "ms",
                   ms(reads)),
            Figure("", "first move after the upgrade over one read", "x", ratios[:1],
                   target=TARGET, direction="at_most", baseline=_BASELINE),
            Figure("", "later moves over one read", "x", ratios[1:], target=TARGET,
                   direction="at_most", baseline=_BASELINE),
        ),
        notes=(f"first ratio {ratios[0]}, median of the later {statistics.median(ratios[1:])}",),
    )  # fmt: skip
    return finished(args.json, result)


if __name__ == "__main__":
    sys.exit(main())
