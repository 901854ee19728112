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
  ratio to the Ed25519 verify rate measured in this run (baseline, as bench/collector.py);
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
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.collector import DISTRICT, start_collectors, stop_collectors
from bench.load_probes import (
    Backends,
    StoredBytes,
    backends_delta,
    count_stored,
    cpu_seconds,
    machine_ticks,
    postgres_bytes,
    sqlite_bytes,
)
from bench.load_report import RunFigures, WindowFigures, build_result
from bench.results import add_json_argument, write_result
from bench.throughput import verify_rate
from demo.broker import Broker, free_port
from demo.postgres import create_database, drop_database
from specs.ack import decode_ack
from specs.block import GENESIS, BlockHeader, block_hash, encode_block
from specs.identifiers import credit_code_check_character
from specs.records import Quality, Reading, iso_time
from specs.signing import SigningKey, generate_signing_key, signature_properties
from specs.topics import GatewayTopics

ACK_TIMEOUT = 15.0
DRAIN_LIMIT = 180.0
DRAIN_STALL = 30.0  # > ACK_TIMEOUT: a resend round fits in it
ALL_RUNS = ("sqlite/fleet", "sqlite/blocks", "postgresql/fleet", "postgresql/blocks")
ZLIB_SAMPLE = 16  # compress every 16th block to measure zlib-6 bytes, not all of them


@dataclass(frozen=True)
class Pending:
    """A block waiting for its ACK."""

    poll_t: float
    sent_at: float
    payload: bytes
    properties: Properties
    readings: int


@dataclass
class SimGateway:
    """A simulated gateway: identity, chain state, and what is waiting for an ACK."""

    enterprise: str
    gateway: str
    key: SigningKey
    seq: int = 0
    prev: str = GENESIS
    pending: dict[int, Pending] = field(default_factory=dict)

    @property
    def topics(self) -> GatewayTopics:
        """Its gz/1 topics."""
        return GatewayTopics(DISTRICT, self.enterprise, self.gateway)

    def seal(self, t: float, points: int) -> tuple[int, bytes, list[tuple[str, str]]]:
        """One poll cycle of `points` readings at `t` as the next signed block."""
        self.seq += 1
        stamp = iso_time(t)  # one poll cycle: every reading shares its time
        readings = [
            Reading(
                point=f"T{p:03d}-LT-01",
                quota="WHP-LT",
                t=stamp,
                value=round(1.0 + ((self.seq * 7 + p) % 997) * 0.01, 3),
                unit="m",
                quality=Quality.GOOD,
            )
            for p in range(points)
        ]
        header = BlockHeader(
            self.gateway, self.enterprise, DISTRICT, "WHP", "load0epoch",
            self.seq, self.prev, stamp, "synced",
        )  # fmt: skip
        payload = encode_block(header, readings)
        self.prev = block_hash(payload)
        return self.seq, payload, signature_properties(self.key.sign(payload))


def sim_gateway(serial: int) -> SimGateway:
    """Gateway number `serial` of the run, with a fresh key."""
    body = f"91{DISTRICT}MB{serial:07d}"
    enterprise = body + credit_code_check_character(body)
    return SimGateway(enterprise, f"{enterprise}-GW01", generate_signing_key())


def _properties(user: list[tuple[str, str]]) -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = user
    return props


@dataclass
class Counters:
    """Monotonic counts the windows difference; latencies as (ACK arrival, latency)."""

    sealed_blocks: int = 0
    sealed_readings: int = 0
    published: int = 0
    resends: int = 0
    acks: int = 0
    acked_blocks: int = 0
    acked_readings: int = 0
    wire_bytes: int = 0
    zlib_bytes: int = 0  # of the sampled blocks (every ZLIB_SAMPLE-th), with their readings
    zlib_readings: int = 0
    ack_bytes: int = 0
    seal_lag_max: float = 0.0
    latencies: list[tuple[float, float]] = field(default_factory=list)
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)


def _wire_size(topic: str, payload: bytes, user: list[tuple[str, str]]) -> int:
    """Bytes of a PUBLISH's topic, payload and user properties (MQTT framing left out)."""
    return len(topic) + len(payload) + sum(len(k) + len(v) + 4 for k, v in user)


async def _gateway_loop(
    gw: SimGateway, client: aiomqtt.Client, plan: Plan, first_due: float, c: Counters
) -> None:
    due = first_due
    # After `stop` it seals no more but keeps resending, as an agent would, until drained.
    while not c.drained.is_set():
        await asyncio.sleep(max(0.0, due - time.time()))
        now = time.time()
        if not c.stop.is_set():
            c.seal_lag_max = max(c.seal_lag_max, now - due)
            await _seal_and_publish(gw, client, plan.points, due, c)
        for old, p in list(gw.pending.items()):
            if now - p.sent_at > ACK_TIMEOUT:
                gw.pending[old] = Pending(p.poll_t, now, p.payload, p.properties, p.readings)
                c.resends += 1
                c.published += 1
                await client.publish(gw.topics.block, p.payload, qos=1, properties=p.properties)
        due += plan.interval


async def _seal_and_publish(
    gw: SimGateway, client: aiomqtt.Client, points: int, due: float, c: Counters
) -> None:
    seq, payload, user = gw.seal(due, points)
    props = _properties(user)
    gw.pending[seq] = Pending(due, time.time(), payload, props, points)
    c.sealed_blocks += 1
    c.sealed_readings += points
    c.wire_bytes += _wire_size(gw.topics.block, payload, user)
    if c.sealed_blocks % ZLIB_SAMPLE == 0:
        c.zlib_bytes += _wire_size(gw.topics.block, zlib.compress(payload, 6), user)
        c.zlib_readings += points
    c.published += 1
    await client.publish(gw.topics.block, payload, qos=1, properties=props)


async def _take_acks(gw: SimGateway, client: aiomqtt.Client, c: Counters) -> None:
    async for message in client.messages:
        ack = decode_ack(bytes(message.payload))
        now = time.time()
        c.acks += 1
        user = getattr(message.properties, "UserProperty", None) or []
        c.ack_bytes += _wire_size(message.topic.value, bytes(message.payload), user)
        for seq in [s for s in gw.pending if s <= ack.acked_through]:
            p = gw.pending.pop(seq)
            c.latencies.append((now, now - p.poll_t))
            c.acked_blocks += 1
            c.acked_readings += p.readings
        if c.stop.is_set() and c.acked_blocks == c.sealed_blocks:
            c.drained.set()


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
        collectors_cpu=sum(cpu_seconds(p) for p in pids),
        broker_cpu=cpu_seconds(broker_pid),
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
        postgres_cpu=backends_delta(a.backends, b.backends),
        loadgen_cpu_per_block=(b.loadgen_cpu - a.loadgen_cpu)
        / max(1, b.sealed_blocks - a.sealed_blocks),
        latency_p50=_percentile(latencies, 0.5),
        latency_p99=_percentile(latencies, 0.99),
        machine_busy=busy / total if total else 0.0,
    )


async def _drain(c: Counters) -> None:
    """Wait until every block is acknowledged, while ACKs keep coming (at most DRAIN_LIMIT).

    A backlog left by a run that got less CPU than it offered drains at the rate the machine
    allows; a drain that makes no progress for DRAIN_STALL seconds ends the wait.
    """
    deadline = time.monotonic() + DRAIN_LIMIT
    while time.monotonic() < deadline:
        before = c.acked_blocks
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(c.drained.wait(), DRAIN_STALL)
        if c.drained.is_set() or c.acked_blocks == before:
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
            asyncio.create_task(_take_acks(g, k, c)) for g, k in zip(gateways, clients, strict=True)
        ]
        start = float(int(time.time()) + 1)
        spread = plan.interval / len(gateways)
        tasks += [
            asyncio.create_task(_gateway_loop(g, k, plan, start + i * spread, c))
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
    verify = verify_rate()
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
    write_result(args.json, result)
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
