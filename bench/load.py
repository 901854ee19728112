"""Scale check (issue 11.8): simulated gateways through real Mosquitto to real collectors.

Each simulated gateway has its own Ed25519 key, hash chain, MQTT connection, client id and
topics; every second (gateways spread evenly over the second) it seals one poll cycle of POINTS
readings into a signed block exactly as an agent does, publishes it at QoS 1, listens on its
own `down/ack` and resends a block unacknowledged after ACK_TIMEOUT. All gateways run as
asyncio tasks in this one process (aiomqtt: ~0.1 ms of CPU per publish).

Runs (each on a fresh broker and database): for each backend (SQLite with one `collector
serve`, PostgreSQL with two sharing `$share/gz-collectors/...`), a *fleet* phase (default 1,000
gateways x 10 points: 1,000 blocks/s, the proof at 1,000 gateways) and a *blocks* phase (default
200 gateways x 100 points: the province's 100-reading block at 1 s). After a warm-up, --repeats
windows of --window seconds each give one value per window (min/median/max) of:

- collector readings per collector CPU-second (collectors' user+system CPU, /proc) and its
  ratio to the Ed25519 verify rate measured in this run (baseline, as bench/collector.py);
- broker messages routed per Mosquitto CPU-second (blocks in + ACKs in, each delivered once);
- PostgreSQL backend CPU per reading (the backends of the run's database; WAL writer and
  checkpointer are shared with other databases and not counted: a lower bound);
- ACK latency p50/p99 from poll (the block's readings' `t`) to the gateway's receipt of the
  collector's signed ACK (sent after the commit);
- the load generator's own CPU per block, and how late a gateway sealed against its second.

Once per run: readings sealed vs stored and blocks sealed vs stored (lost = sealed - stored,
stored twice = stored - sealed; both must be 0), resends, bytes per stored reading (the
`readings` table with its indexes, and the whole database's growth), bytes per reading on the
wire (payload + topic + signature properties) raw and zlib-6 per block.

Targets: ACK p99 <= 2 s (issue 8), nothing lost or stored twice (gated). The per-core figures
are not gated: at 1 s the collectors are not saturated, so they include idle-time overheads
(conservative for sizing). They feed bench/capacity.py, which sizes a province and the nation
(docs/scale.md; `bench.capacity.markdown_table(bench.capacity.per_core_from_result(r))`).

Bounded: 4 runs x (warm-up 8 s + 3 x 12 s + drain) ~ 4 min at defaults on a 2-core machine.
Run: `.venv/bin/python -m bench.load [--json PATH] [--backends sqlite,postgresql]
[--fleet 1000x10] [--blocks 200x100] [--repeats 3] [--window 12]`.
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
DRAIN_TIMEOUT = 60.0


@dataclass(frozen=True)
class Pending:
    """A block waiting for its ACK."""

    poll_t: float
    sent_at: float
    payload: bytes
    user: list[tuple[str, str]]
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
        readings = [
            Reading(
                point=f"T{p:03d}-LT-01",
                quota="WHP-LT",
                t=iso_time(t),
                value=round(1.0 + ((self.seq * 7 + p) % 997) * 0.01, 3),
                unit="m",
                quality=Quality.GOOD,
            )
            for p in range(points)
        ]
        header = BlockHeader(
            self.gateway, self.enterprise, DISTRICT, "WHP", "load0epoch",
            self.seq, self.prev, iso_time(t), "synced",
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
    zlib_bytes: int = 0
    ack_bytes: int = 0
    seal_lag_max: float = 0.0
    latencies: list[tuple[float, float]] = field(default_factory=list)
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)


def _wire_size(topic: str, payload: bytes, user: list[tuple[str, str]]) -> int:
    """Bytes of a PUBLISH's topic, payload and user properties (MQTT framing left out)."""
    return len(topic) + len(payload) + sum(len(k) + len(v) + 4 for k, v in user)


async def _gateway_loop(
    gw: SimGateway, client: aiomqtt.Client, points: int, first_due: float, c: Counters
) -> None:
    due = first_due
    while not c.stop.is_set():
        await asyncio.sleep(max(0.0, due - time.time()))
        if c.stop.is_set():
            return
        now = time.time()
        c.seal_lag_max = max(c.seal_lag_max, now - due)
        seq, payload, user = gw.seal(due, points)
        gw.pending[seq] = Pending(due, now, payload, user, points)
        c.sealed_blocks += 1
        c.sealed_readings += points
        c.wire_bytes += _wire_size(gw.topics.block, payload, user)
        c.zlib_bytes += _wire_size(gw.topics.block, zlib.compress(payload, 6), user)
        c.published += 1
        await client.publish(gw.topics.block, payload, qos=1, properties=_properties(user))
        for old, p in list(gw.pending.items()):
            if now - p.sent_at > ACK_TIMEOUT:
                gw.pending[old] = Pending(p.poll_t, now, p.payload, p.user, p.readings)
                c.resends += 1
                c.published += 1
                await client.publish(
                    gw.topics.block, p.payload, qos=1, properties=_properties(p.user)
                )
        due += 1.0


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


@dataclass(frozen=True)
class Plan:
    """One run: which storage, how many collectors and gateways, how long."""

    backend: str
    collectors: int
    gateways: int
    points: int
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
        spread = 1.0 / len(gateways)
        tasks += [
            asyncio.create_task(_gateway_loop(g, k, plan.points, start + i * spread, c))
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
        if c.acked_blocks < c.sealed_blocks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(c.drained.wait(), DRAIN_TIMEOUT)
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
        wire_bytes=counters.wire_bytes, zlib_bytes=counters.zlib_bytes,
        ack_bytes_mean=counters.ack_bytes / max(1, counters.acks),
        readings_table_bytes=full.readings_table,
        database_growth_bytes=full.database - empty.database,
        seal_lag_max=counters.seal_lag_max,
        latency_p50=_percentile(latencies, 0.5), latency_p99=_percentile(latencies, 0.99),
        latency_max=max(latencies, default=float("nan")),
    )  # fmt: skip


def _shape(text: str) -> tuple[int, int]:
    gateways, _, points = text.partition("x")
    return int(gateways), int(points)


def main() -> int:
    """Run every backend x phase, write the result, fail on loss or a p99 over target."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--fleet", default="1000x10", help="GATEWAYSxPOINTS of the fleet phase")
    parser.add_argument("--blocks", default="200x100", help="GATEWAYSxPOINTS of the blocks phase")
    parser.add_argument("--phases", default="fleet,blocks")
    parser.add_argument("--repeats", type=int, default=3, help="measuring windows per run")
    parser.add_argument("--window", type=float, default=12.0, help="seconds per window")
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--pg-collectors", type=int, default=2)
    add_json_argument(parser)
    args = parser.parse_args()
    verify = verify_rate()
    runs: list[RunFigures] = []
    for backend in args.backends.split(","):
        for number, phase in enumerate(args.phases.split(",")):
            gateways, points = _shape(getattr(args, phase))
            plan = Plan(
                backend, args.pg_collectors if backend == "postgresql" else 1,
                gateways, points, args.warmup, args.window, args.repeats,
            )  # fmt: skip
            runs.append(run_plan(plan, phase, 1 + 100_000 * number))
    result = build_result(runs, verify, os.cpu_count() or 1)
    write_result(args.json, result)
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
