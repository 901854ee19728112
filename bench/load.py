"""Scale check (issue 11.8): simulated gateways through real Mosquitto to real collectors.

Each simulated gateway has its own Ed25519 key, hash chain, MQTT connection, client id and
topics; once per interval (gateways spread evenly over it) it seals one poll cycle of POINTS
readings into a signed block exactly as an agent does, publishes it at QoS 1, listens on its
own `down/ack` and resends a block unacknowledged after ACK_TIMEOUT (also while draining). All
gateways run as asyncio tasks in this one process (about 1 ms of CPU per block here, with the
ACK it takes: one core simulates ~800 gateways at 1 s).

Runs (each on a fresh broker and database), `--runs`: `postgresql/fleet` is the proof at 1,000
gateways (default `--fleet 1000x10@2`: 1,000 gateways of 10 points, a block every 2 s — at 1 s
the collectors, the load generator and PostgreSQL want ~2.8 cores, more than this machine
has), two `collector serve` sharing `$share/gz-collectors/...`; `sqlite/blocks` and
`postgresql/blocks` carry the province's block (default `--blocks 100x100@1`: 100-reading
blocks at 1 s), on one collector (SQLite) or two (PostgreSQL). After a warm-up, --repeats
windows of --window seconds give one value per window (min/median/max) of:

- collector readings per collector CPU-second (collectors' user+system CPU, /proc) and its
  ratio to the Ed25519 verifies per CPU-second of a 10-reading block, measured in this run
  (baseline; CPU time, not wall time, so that a busy machine does not move it);
  with both phases of a backend, the fit CPU per block = a + n b (per block a, per reading b);
- broker messages routed per Mosquitto CPU-second (blocks and resends in, ACKs in; each is
  delivered to one subscriber);
- PostgreSQL backend CPU per reading (the backends of the run's database; WAL writer and
  checkpointer are shared with other databases and not counted: a lower bound);
- ACK latency p50/p99 from poll (the block's readings' `t`) to the gateway's receipt of the
  collector's signed ACK (sent after the commit);
- the load generator's own CPU per block, and the machine's busy share.

Once per run: readings and blocks sealed vs stored (not stored after the drain = sealed -
stored, stored twice = stored - sealed; both gated at 0), resends, the latest seal after its
due time (the load generator kept up?), bytes per stored reading (`readings` with its indexes,
and the whole database's growth), bytes per reading on the wire (payload + topic + signature
properties) raw and zlib-6 per block (every 16th block), bytes per ACK.

Gated: nothing lost, nothing stored twice. Not gated: the per-core figures (at a steady 1 s the
collectors are not saturated, so they carry idle-time overheads: conservative for sizing) and
p99 <= 2 s (`--gate-latency` gates it; on a shared machine the run may get less CPU than it
offers, and p99 then measures that queue). bench/capacity.py sizes a province and the nation
from the postgresql/blocks figures (docs/scale.md; the report calls
`bench.capacity.markdown_table(bench.capacity.per_core_from_result(result))`).

Bounded: 3 runs x (setup + warm-up 8 s + 3 x 12 s + drain): ~3-4 min on an idle 2-core
machine. The drain ends when every block is acknowledged, after 30 s without an ACK, or at
180 s; a shared machine that leaves the run less CPU than it offers makes it longer (~6-9 min
seen with load average 8-11 on 2 cores).
Run: `.venv/bin/python -m bench.load [--json PATH] [--runs all] [--fleet 1000x10@2]
[--blocks 100x100@1] [--repeats 3] [--window 12] [--gate-latency]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from bench.collector import start_collectors, stop_collectors
from bench.load_gateways import Counters, SimGateway, gateway_loop, sim_gateway, take_acks
from bench.load_probes import (
    Backends,
    StoredBytes,
    count_stored,
    cpu_seconds_or_zero,
    postgres_bytes,
    sqlite_bytes,
)
from bench.load_report import RunFigures, WindowFigures, build_result
from bench.procfs import growth, machine_ticks
from bench.rates import ed25519_verify_rate
from bench.results import add_json_argument, finished
from demo.broker import Broker, free_port
from demo.postgres import create_database, drop_database

DRAIN_LIMIT = 180.0
DRAIN_STALL = 30.0  # > ACK_TIMEOUT (15 s): a resend round fits in it
ALL_RUNS = ("sqlite/fleet", "sqlite/blocks", "postgresql/fleet", "postgresql/blocks")


@dataclass(frozen=True)
class Sample:
    """Everything a window differences, at one moment."""

    wall: float
    acked_blocks: int
    acked_readings: int
    messages: int
    collectors_cpu: float
    broker_cpu: float
    backends: dict[int, float]
    loadgen_cpu: float
    sealed_blocks: int
    machine: tuple[int, int]


async def _sample(c: Counters, pids: Sequence[int], broker_pid: int, pg: Backends) -> Sample:
    return Sample(
        wall=time.time(),
        acked_blocks=c.acked_blocks,
        acked_readings=c.acked_readings,
        messages=c.published + c.acks,
        collectors_cpu=sum(cpu_seconds_or_zero(p) for p in pids),
        broker_cpu=cpu_seconds_or_zero(broker_pid),
        backends=await pg.cpu_by_pid(),
        loadgen_cpu=time.process_time(),
        sealed_blocks=c.sealed_blocks,
        machine=machine_ticks(),
    )


def _percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def window_figures(a: Sample, b: Sample, latencies: Sequence[float]) -> WindowFigures:
    """The per-core figures between samples `a` and `b`."""
    readings = b.acked_readings - a.acked_readings
    busy, total = (y - x for x, y in zip(a.machine, b.machine, strict=True))
    return WindowFigures(
        seconds=b.wall - a.wall,
        readings=readings,
        blocks=b.acked_blocks - a.acked_blocks,
        messages=b.messages - a.messages,
        collectors_cpu=b.collectors_cpu - a.collectors_cpu,
        broker_cpu=b.broker_cpu - a.broker_cpu,
        postgres_cpu=growth(a.backends, b.backends),
        loadgen_cpu_per_block=(b.loadgen_cpu - a.loadgen_cpu)
        / max(1, b.sealed_blocks - a.sealed_blocks),
        latency_p50=_percentile(latencies, 0.5),
        latency_p99=_percentile(latencies, 0.99),
        machine_busy=busy / total if total else 0.0,
    )


async def _drain(c: Counters) -> None:
    """Wait until every block is acknowledged, while any ACK keeps coming (at most DRAIN_LIMIT).

    A backlog left by a run that got less CPU than it offered drains at the rate the machine
    allows; a drain that makes no progress for DRAIN_STALL seconds ends the wait.
    """
    deadline = time.monotonic() + DRAIN_LIMIT
    while time.monotonic() < deadline:
        # Any ACK is progress: ACKs of resent duplicates queued ahead of a hole's resend
        # do not advance acked_through, but the collector is working through them.
        before = c.acks
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(c.drained.wait(), DRAIN_STALL)
        if c.drained.is_set() or c.acks == before:
            return


@dataclass(frozen=True)
class Plan:
    """One run: which storage, how many collectors and gateways, how long."""

    backend: str
    collectors: int
    gateways: int
    points: int
    interval: float
    warmup: float
    window: float
    repeats: int


async def _drive(
    plan: Plan, gateways: list[SimGateway], broker: Broker, pids: list[int], pg: Backends
) -> tuple[Counters, list[WindowFigures]]:
    c = Counters()
    assert broker.process is not None
    broker_pid = broker.process.pid
    windows: list[WindowFigures] = []
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for gw in gateways:
            client = aiomqtt.Client(
                "127.0.0.1", broker.port, identifier=gw.gateway,
                protocol=aiomqtt.ProtocolVersion.V5,
            )  # fmt: skip
            await stack.enter_async_context(client)
            await client.subscribe(gw.topics.ack, qos=1)
            clients.append(client)
        tasks = [
            asyncio.create_task(take_acks(g, k, c)) for g, k in zip(gateways, clients, strict=True)
        ]
        start = float(int(time.time()) + 1)
        spread = plan.interval / len(gateways)
        tasks += [
            asyncio.create_task(
                gateway_loop(
                    g,
                    k,
                    c,
                    points=plan.points,
                    interval=plan.interval,
                    first_due=start + i * spread,
                )
            )
            for i, (g, k) in enumerate(zip(gateways, clients, strict=True))
        ]
        await asyncio.sleep(start + plan.warmup - time.time())
        previous = await _sample(c, pids, broker_pid, pg)
        for _ in range(plan.repeats):
            await asyncio.sleep(plan.window)
            current = await _sample(c, pids, broker_pid, pg)
            lats = [lat for at, lat in c.latencies if previous.wall <= at < current.wall]
            windows.append(window_figures(previous, current, lats))
            previous = current
        c.stop.set()
        if c.acked_blocks == c.sealed_blocks:
            c.drained.set()
        await _drain(c)
        c.drained.set()  # the gateways' loops end
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return c, windows


def verify_per_cpu_s(cpu_seconds: float = 1.0) -> float:
    """Ed25519 single verifies of a block-sized message per CPU-second of this process.

    CPU time, not wall time, like every per-core figure here: a wall-clock rate measured on a
    busy machine falls with the machine's load (1,543/s against 6,509/s an hour earlier) and
    would make the ratios to it meaningless.
    """
    message = sim_gateway(0).seal(time.time(), 10)[1]
    return ed25519_verify_rate(message, cpu_seconds, clock=time.process_time, batch=100)


def _stored_bytes(url: str, work: Path) -> StoredBytes:
    if url.startswith("sqlite"):
        return sqlite_bytes(work / url.removeprefix("sqlite:///"))
    return asyncio.run(postgres_bytes(url))


def run_plan(plan: Plan, phase: str, serial0: int) -> RunFigures:
    """One run on a fresh broker and database; everything stopped and dropped afterwards."""
    gateways = [sim_gateway(serial0 + i) for i in range(plan.gateways)]
    work = Path(tempfile.mkdtemp(prefix="ganzhi-bench-load-"))
    database = f"ganzhi_load_{os.getpid()}_{serial0}"
    pg = plan.backend == "postgresql"
    url = create_database(database) if pg else "sqlite:///collector.db"
    broker = Broker(port=free_port(), workdir=work)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        broker.start()
        start_collectors(work, url, broker, gateways, procs, count=plan.collectors)
        empty = _stored_bytes(url, work)
        backends = Backends(database if pg else None)
        counters, windows = asyncio.run(
            _drive(plan, gateways, broker, [p.pid for p in procs], backends)
        )
        stop_collectors(procs)  # SQLite: the WAL is checkpointed and the file is whole
        stored_readings, stored_blocks = asyncio.run(count_stored(url, work))
        full = _stored_bytes(url, work)
    finally:
        stop_collectors(procs)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
        if pg:
            drop_database(database)
    latencies = [lat for _, lat in counters.latencies]
    return RunFigures(
        backend=plan.backend, phase=phase, gateways=plan.gateways, points=plan.points,
        collectors=plan.collectors, windows=tuple(windows),
        sealed_readings=counters.sealed_readings, stored_readings=stored_readings,
        sealed_blocks=counters.sealed_blocks, stored_blocks=stored_blocks,
        resends=counters.resends, unacked_blocks=sum(len(g.pending) for g in gateways),
        interval=plan.interval, wire_bytes=counters.wire_bytes,
        zlib_bytes_per_reading=counters.zlib_bytes / max(1, counters.zlib_readings),
        ack_bytes_mean=counters.ack_bytes / max(1, counters.acks),
        readings_table_bytes=full.readings_table,
        database_growth_bytes=full.database - empty.database,
        seal_lag_max=counters.seal_lag_max,
        latency_p50=_percentile(latencies, 0.5), latency_p99=_percentile(latencies, 0.99),
        latency_max=max(latencies, default=float("nan")),
    )  # fmt: skip


def _shape(text: str) -> tuple[int, int, float]:
    """GATEWAYSxPOINTS[@SECONDS]: `1000x10@2` is 1,000 gateways of 10 points, a block every 2 s."""
    shape, _, interval = text.partition("@")
    gateways, _, points = shape.partition("x")
    return int(gateways), int(points), float(interval or 1)


def main() -> int:
    """Run every backend x phase, write the result, fail on loss or a p99 over target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--fleet", default="1000x10@2", help="GATEWAYSxPOINTS[@SECONDS], fleet phase"
    )
    parser.add_argument(
        "--blocks", default="100x100@1", help="GATEWAYSxPOINTS[@SECONDS], blocks phase"
    )
    parser.add_argument(
        "--runs",
        default="sqlite/blocks,postgresql/fleet,postgresql/blocks",
        help="BACKEND/PHASE,... (sqlite/fleet too, or 'all')",
    )
    parser.add_argument("--gate-latency", action="store_true", help="fail on p99 > 2 s")
    parser.add_argument("--backends", help="with --phases, instead of --runs: sqlite,postgresql")
    parser.add_argument("--phases", help="with --backends, instead of --runs: fleet,blocks")
    parser.add_argument("--repeats", type=int, default=3, help="measuring windows per run")
    parser.add_argument("--window", type=float, default=12.0, help="seconds per window")
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--pg-collectors", type=int, default=2)
    add_json_argument(parser)
    args = parser.parse_args()
    verify = verify_per_cpu_s()
    runs: list[RunFigures] = []
    wanted = ALL_RUNS if args.runs == "all" else tuple(args.runs.split(","))
    if args.backends or args.phases:
        wanted = tuple(
            f"{backend}/{phase}"
            for backend in (args.backends or "sqlite,postgresql").split(",")
            for phase in (args.phases or "fleet,blocks").split(",")
        )
    for number, run in enumerate(wanted):
        backend, _, phase = run.partition("/")
        gateways, points, interval = _shape(getattr(args, phase))
        plan = Plan(
            backend, args.pg_collectors if backend == "postgresql" else 1,
            gateways, points, interval, args.warmup, args.window, args.repeats,
        )  # fmt: skip
        runs.append(run_plan(plan, phase, 1 + 100_000 * number))
    result = build_result(runs, verify, os.cpu_count() or 1, gate_latency=args.gate_latency)
    return finished(args.json, result)


if __name__ == "__main__":
    sys.exit(main())
