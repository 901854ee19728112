"""API reads on PostgreSQL over a month of 1 s readings: first page and `every=1h`.

One point read every second for a 30-day month (2,592,000 rows) plus four points at 10 s
(1,036,800 rows) are loaded into a fresh database (COPY straight into the partitions: loading
is setup, not what is measured; their per-minute rollups are filled as migration 2 fills
them), then a real `collector serve` answers:

- `GET /v1/readings?gateway=G&point=P&from=<month start>&to=<month end>` (first page,
  limit 1000), target < 200 ms;
- the same with `every=1h` (720 buckets of min/max/avg/last, computed in the database),
  target < 1 s.

Each is timed 7 times over HTTP (median, min, max); the same-run baseline is the bare SQL
that fetches the first 1000 rows of the series through asyncpg, so the report shows what the
API adds on top of the database.

`--days` shortens the month (quick mode); `--repeats` is the number of timed requests of each
kind. Result (bench/results.py, `--json PATH`): min/median/max of each; exit 1 when a median
misses its target. Run: `.venv/bin/python -m bench.queries [--days 30] [--repeats 7]` (about
1.5 min at the defaults, most of it loading 3.6 M rows).
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import os
import statistics
import sys
import time

import asyncpg
import httpx

from bench.collector import BIN, DISTRICT, TOKEN, _write_config
from bench.results import BenchResult, Figure, add_json_argument, finished
from bench.rig import Scratch, run_command
from collector.model import Gateway, GatewayKey
from collector.storage.months import months_of
from collector.storage.postgres import PostgresStorage
from collector.storage.postgres.migration_sql import ROLLUP_FIRST_FILL
from demo.broker import free_port, wait_for_port
from demo.postgres import create_database, drop_database
from specs.identifiers import credit_code_check_character
from specs.signing import generate_signing_key

MONTH_START = float(calendar.timegm((2026, 11, 1, 0, 0, 0)))
DAY = 86400.0
POINT = "T001-LT-01"
OTHERS = ("T002-LT-01", "T003-LT-01", "T004-LT-01", "T005-LT-01")
CHUNK = 200_000
REPEAT = 7
# Set by main from --days and --repeats before anything is loaded or timed.
settings = {"end": MONTH_START + 30 * DAY, "repeats": REPEAT}


def _gateway() -> tuple[str, str]:
    body = f"91{DISTRICT}MQ0000001"
    enterprise = body + credit_code_check_character(body)
    return enterprise, f"{enterprise}-GW01"


def _rows(gateway: str, point: str, step: float) -> list[tuple[object, ...]]:
    count = int((settings["end"] - MONTH_START) / step)
    return [
        (gateway, "bench0epoch", 1 + i // 500, i % 500, point, "WHP-LT",
         MONTH_START + i * step, 1.0 + (i % 997) * 0.01, "m", "good", "[]")
        for i in range(count)
    ]  # fmt: skip


async def _load(url: str) -> tuple[str, int]:
    enterprise, gateway = _gateway()
    storage = await PostgresStorage.open(url)
    try:
        key = generate_signing_key().public()
        await storage.register(
            Gateway(gateway, enterprise, DISTRICT, time.time()),
            GatewayKey(key.kid, gateway, key.alg, key.public_pem(), time.time()),
        )
        db = await asyncpg.connect(url)
        try:
            months = months_of([MONTH_START, settings["end"] - 1])
            await storage.partitions.ensure(db, months, max(months))  # all its own months
            loaded = 0
            for point, step in ((POINT, 1.0), *((other, 10.0) for other in OTHERS)):
                rows = _rows(gateway, point, step)
                for i in range(0, len(rows), CHUNK):
                    await db.copy_records_to_table(
                        "readings",
                        records=rows[i : i + CHUNK],
                        columns=[
                            "gateway", "epoch", "seq", "idx", "point", "quota", "t", "value",
                            "unit", "quality", "flags",
                        ],
                    )  # fmt: skip
                last = rows[-1]
                await db.execute(
                    "INSERT INTO latest (gateway, point, quota, t, value, unit, quality, flags)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    gateway, point, "WHP-LT", last[6], last[7], "m", "good", "[]",
                )  # fmt: skip
                loaded += len(rows)
            # What the ingest would have folded in reading by reading (collector.storage.rollups).
            await db.execute(ROLLUP_FIRST_FILL)
            await db.execute("ANALYZE")
        finally:
            await db.close()
    finally:
        await storage.close()
    return gateway, loaded


async def _baseline(url: str, gateway: str) -> list[float]:
    db = await asyncpg.connect(url)
    try:
        times = []
        for _ in range(int(settings["repeats"])):
            started = time.perf_counter()
            await db.fetch(
                "SELECT gateway, point, quota, t, value, unit, quality, flags, id FROM readings"
                " WHERE gateway = $1 AND point = $2 AND t >= $3 AND t < $4"
                " ORDER BY gateway, point, t, id LIMIT 1001",
                gateway, POINT, MONTH_START, settings["end"],
            )  # fmt: skip
            times.append(time.perf_counter() - started)
        return times
    finally:
        await db.close()


async def _api_times(port: int, params: dict[str, str | int]) -> tuple[list[float], int]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=60,
    ) as http:
        times, items = [], 0
        for _ in range(int(settings["repeats"])):
            started = time.perf_counter()
            response = await http.get("/v1/readings", params=params)
            times.append(time.perf_counter() - started)
            response.raise_for_status()
            items = len(response.json()["items"])
        return times, items


def _summary(times: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(1000 * statistics.median(times), 1),
        "min_ms": round(1000 * min(times), 1),
        "max_ms": round(1000 * max(times), 1),
    }


def main() -> int:
    """Load, measure, write the result; fail when a median misses its target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30, help="of readings from 2026-11-01")
    parser.add_argument("--repeats", type=int, default=REPEAT, help="timed requests of each")
    add_json_argument(parser)
    args = parser.parse_args()
    settings["end"] = MONTH_START + args.days * DAY
    settings["repeats"] = max(1, args.repeats)
    name = f"ganzhi_bench_queries_{os.getpid()}"
    url = create_database(name)
    scratch = Scratch.new("ganzhi-bench-queries-")
    work, broker = scratch.work, scratch.broker
    try:
        started = time.perf_counter()
        gateway, loaded = asyncio.run(_load(url))
        load_s = time.perf_counter() - started
        broker.start()
        port = free_port()
        config = _write_config(work, "collector", url, broker, port)
        run_command(work, "collector", "keys", "init", "-c", str(config))
        scratch.spawn("collector", str(BIN / "collector"), "serve", "-c", str(config))
        wait_for_port(port, timeout=60)
        window: dict[str, str | int] = {
            "gateway": gateway,
            "point": POINT,
            "from": "2026-11-01T00:00:00+00:00",
            "to": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(settings["end"])),
        }
        baseline = asyncio.run(_baseline(url, gateway))
        page, page_items = asyncio.run(_api_times(port, {**window, "limit": 1000}))
        hourly, hourly_items = asyncio.run(_api_times(port, {**window, "every": "1h"}))
    finally:
        scratch.stop(30)
        drop_database(name)
    buckets = args.days * 24
    if hourly_items != buckets:
        raise SystemExit(f"every=1h gave {hourly_items} buckets, not {buckets}")
    span = f"{args.days} days of 1 s readings"

    def ms(times: list[float]) -> tuple[float, ...]:
        return tuple(round(1000 * t, 1) for t in times)

    result = BenchResult(
        "queries",
        (
            Figure("", f"API first page (limit 1000), {span}", "ms", ms(page), target=200,
                   direction="at_most"),
            Figure("", f"API every=1h ({buckets} buckets), {span}", "ms", ms(hourly),
                   target=1000, direction="at_most"),
            Figure("", "bare SQL: first 1000 rows of the series (asyncpg)", "ms", ms(baseline)),
            Figure("", "API first page over bare SQL", "x",
                   (round(statistics.median(page) / statistics.median(baseline), 1),),
                   baseline="the same rows by asyncpg, same run (medians)"),
        ),
        notes=((f"{loaded:,} rows loaded by COPY in {load_s:.0f} s (setup, not measured); "
               f"{page_items} items on the first page."),),
    )  # fmt: skip
    return finished(args.json, result)


if __name__ == "__main__":
    sys.exit(main())
