"""Province load test: many gateways at 1 s through one broker to N collectors, for minutes.

GATEWAYS simulated gateways each poll POINTS points every second, seal the cycle into one
signed block (hash-chained, as an agent does) and publish it at QoS 1 through a real
Mosquitto; `--collectors` real `collector serve` processes share the subscription and store
into one database (PostgreSQL for more than one). A gateway resends a block that has no ACK
after ACK_TIMEOUT seconds, as an agent would.

Reported: readings sealed and stored (must be equal: nothing lost, nothing twice), the latency
from poll (the readings' `t`) to the collector's signed ACK (sent only after the commit, so
an upper bound of poll -> stored) as p50/p99/max, resends, and each collector's CPU share.
Target (issue 8): p99 < 2 s, nothing lost.

Run: `.venv/bin/python -m bench.load [--gateways 100 --points 50 --seconds 300
--collectors 2 --backend postgresql]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from bench.collector import (
    DISTRICT,
    _count_readings,
    _cpu_seconds,
    start_collectors,
    stop_collectors,
)
from demo.broker import Broker, free_port
from demo.postgres import create_database, drop_database
from specs.ack import decode_ack
from specs.block import GENESIS, BlockHeader, block_hash, encode_block
from specs.identifiers import credit_code_check_character
from specs.records import Quality, Reading, iso_time
from specs.signing import SigningKey, generate_signing_key, signature_properties
from specs.topics import GatewayTopics

ACK_TIMEOUT = 15.0
TARGET_P99_S = 2.0


@dataclass
class LoadGateway:
    """A simulated gateway: identity, chain state, and what is waiting for an ACK."""

    enterprise: str
    gateway: str
    key: SigningKey
    seq: int = 0
    prev: str = GENESIS
    # seq -> (poll time, publish time, payload, signature properties)
    pending: dict[int, tuple[float, float, bytes, list[tuple[str, str]]]] = field(
        default_factory=dict
    )
    acked_through: int = 0

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


def _gateway(serial: int) -> LoadGateway:
    body = f"91{DISTRICT}MB{serial:07d}"
    enterprise = body + credit_code_check_character(body)
    return LoadGateway(enterprise, f"{enterprise}-GW01", generate_signing_key())


def _properties(user: list[tuple[str, str]]) -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = user
    return props


@dataclass
class Tally:
    """What the run saw."""

    latencies: list[float] = field(default_factory=list)
    resends: int = 0
    sealed_readings: int = 0
    drained: asyncio.Event = field(default_factory=asyncio.Event)


async def _take_acks(
    client: aiomqtt.Client, by_gateway: dict[str, LoadGateway], tally: Tally
) -> None:
    async for message in client.messages:
        ack = decode_ack(bytes(message.payload))
        gw = by_gateway[ack.gateway]
        now = time.time()
        for seq in [s for s in gw.pending if s <= ack.acked_through]:
            tally.latencies.append(now - gw.pending.pop(seq)[0])
        gw.acked_through = max(gw.acked_through, ack.acked_through)
        if not any(g.pending for g in by_gateway.values()):
            tally.drained.set()


async def _run_gateways(
    client: aiomqtt.Client, gateways: list[LoadGateway], points: int, seconds: int, tally: Tally
) -> None:
    start = math.ceil(time.time())
    for tick in range(seconds):
        due = start + tick
        await asyncio.sleep(max(0.0, due - time.time()))
        now = time.time()
        for gw in gateways:
            seq, payload, user = gw.seal(due, points)
            gw.pending[seq] = (due, now, payload, user)
            tally.sealed_readings += points
            await client.publish(gw.topics.block, payload, qos=1, properties=_properties(user))
            for old, (poll_t, sent, old_payload, old_user) in list(gw.pending.items()):
                if now - sent > ACK_TIMEOUT:
                    gw.pending[old] = (poll_t, now, old_payload, old_user)
                    tally.resends += 1
                    await client.publish(
                        gw.topics.block, old_payload, qos=1, properties=_properties(old_user)
                    )


async def _drive(broker: Broker, gateways: list[LoadGateway], points: int, seconds: int) -> Tally:
    tally = Tally()
    by_gateway = {gw.gateway: gw for gw in gateways}
    async with (
        aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as acks,
        aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as pub,
    ):
        await acks.subscribe("gz/1/+/+/+/down/ack", qos=1)
        taker = asyncio.create_task(_take_acks(acks, by_gateway, tally))
        await _run_gateways(pub, gateways, points, seconds, tally)
        if any(gw.pending for gw in gateways):
            tally.drained.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tally.drained.wait(), timeout=60)
        taker.cancel()
    return tally


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else math.nan


def main() -> int:
    """Run the load, print one JSON line, fail on loss or a p99 over target."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--gateways", type=int, default=100)
    parser.add_argument("--points", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=300)
    parser.add_argument("--collectors", type=int, default=2)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    args = parser.parse_args()
    gateways = [_gateway(serial) for serial in range(1, args.gateways + 1)]
    work = Path(tempfile.mkdtemp(prefix="ganzhi-bench-load-"))
    database = f"ganzhi_load_{os.getpid()}"
    url = create_database(database) if args.backend == "postgresql" else "sqlite:///collector.db"
    broker = Broker(port=free_port(), workdir=work)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        broker.start()
        start_collectors(work, url, broker, gateways, procs, count=args.collectors)
        cpu_before = [_cpu_seconds(p.pid) for p in procs]
        started = time.perf_counter()
        tally = asyncio.run(_drive(broker, gateways, args.points, args.seconds))
        elapsed = time.perf_counter() - started
        cpu = [_cpu_seconds(p.pid) - before for p, before in zip(procs, cpu_before, strict=True)]
        stored = asyncio.run(_count_readings(url, work))
    finally:
        stop_collectors(procs)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
        if args.backend == "postgresql":
            drop_database(database)
    p99 = _percentile(tally.latencies, 0.99)
    figures = {
        "gateways": args.gateways,
        "points": args.points,
        "seconds": args.seconds,
        "collectors": args.collectors,
        "backend": args.backend,
        "readings_sealed": tally.sealed_readings,
        "readings_stored": stored,
        "unacked_blocks": sum(len(gw.pending) for gw in gateways),
        "resends": tally.resends,
        "latency_p50_s": round(_percentile(tally.latencies, 0.5), 3),
        "latency_p99_s": round(p99, 3),
        "latency_max_s": round(max(tally.latencies, default=math.nan), 3),
        "collector_cpu_percent": [round(100 * c / elapsed, 1) for c in cpu],
    }
    print(json.dumps(figures))
    ok = stored == tally.sealed_readings and p99 < TARGET_P99_S
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
