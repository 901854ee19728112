"""G1 and G3 (README, Benchmarks), each against a baseline from the same run.

G1 agent pipeline (acquisition stubbed): readings -> seal (canonical JSON, Ed25519, SQLite
FULL) -> MQTT 5 QoS 1 -> collector ACK -> released. Baseline: the same readings JSON-encoded
in batches of the same size and published QoS 1 with no signing and no database.
Target: agent >= 0.25x baseline.

G3 collector ingest into SQLite: pre-signed blocks published as fast as the broker takes
them; time until the collector has stored (and ACKed) the last one. Baseline: Ed25519
single-message verify rate. Target: >= 1.5x the verify rate.

Run: `make bench` (or `.venv/bin/python -m bench.throughput`). Exits non-zero when a ratio
misses its target. Prints one JSON line of figures at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt
import httpx
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from demo.__main__ import TOKEN, write_configs
from demo.broker import Broker, free_port, wait_for_port
from edge_agent.config import load_site_config
from edge_agent.core.chain import SealedBlock
from edge_agent.shell.collector_keys import read_collector_keys
from edge_agent.shell.outbox import open_outbox
from edge_agent.shell.publisher import Publisher, UplinkSettings
from edge_agent.shell.runtime import identity_of
from edge_agent.shell.sealer import Sealer
from hostkit.logs import configure_logging
from specs.block import GENESIS, BlockHeader, block_hash, encode_block
from specs.records import Quality, Reading, Record, iso_time
from specs.signing import (
    generate_signing_key,
    load_signing_key,
    signature_properties,
)
from specs.topics import GatewayTopics

BIN = Path(sys.executable).parent
BATCH = 500


def _readings(count: int, start: float) -> list[Reading]:
    return [
        Reading(
            point=f"T{i % 50:03d}-LT-01",
            quota="WHP-LT",
            t=iso_time(start + i * 0.001),
            value=round(1.0 + (i % 997) * 0.01, 3),
            unit="m",
            quality=Quality.GOOD,
        )
        for i in range(count)
    ]


def verify_rate(seconds: float = 1.0) -> float:
    """Ed25519 verifications per second of a ~97-byte message, one core."""
    key = generate_signing_key()
    message = json.dumps(_readings(1, time.time())[0].to_wire()).encode()
    signature = key.sign(message)
    public = key.public()
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(200):
            public.verify(signature, message)
        count += 200
    return count / (time.perf_counter() - started)


async def raw_publish_rate(broker: Broker, readings: list[Reading]) -> float:
    """Baseline: JSON-encode batches of BATCH readings and publish them QoS 1; nothing else."""
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        started = time.perf_counter()
        for i in range(0, len(readings), BATCH):
            payload = json.dumps([r.to_wire() for r in readings[i : i + BATCH]]).encode()
            await client.publish("bench/raw", payload, qos=1)
        elapsed = time.perf_counter() - started
    return len(readings) / elapsed


async def agent_rates(work: Path, readings: list[Reading]) -> tuple[float, float]:
    """G1: the agent's pipeline with acquisition stubbed.

    Returns (published, delivered) readings per second: published = sealed, signed, stored
    with synchronous=FULL and PUBACKed by the broker (the prototype's G1 definition);
    delivered = also released by the collector's signed ACK (bounded by G3 on 2 cores).
    """
    config = load_site_config(work / "site.yaml")
    key = load_signing_key(config.signing.key_file.read_bytes())
    collector_key = read_collector_keys(config.uplink.collector_key_files)
    topics = GatewayTopics(config.site.district, config.site.enterprise, config.site.gateway)
    queue: asyncio.Queue[Record] = asyncio.Queue(maxsize=20_000)
    sealed: list[int] = []

    def on_sealed(block: SealedBlock) -> None:
        sealed.append(block.records)
        publisher.notify_sealed(block.seq)

    async with open_outbox(work / "bench-outbox.db", identity_of(config), key) as outbox:
        publisher = Publisher(
            outbox,
            topics,
            collector_key,
            # A window as deep as the run, so publishing never waits for collector ACKs.
            UplinkSettings(
                config.uplink.host, config.uplink.port, "bench-agent", 30, 600, 60, 1000
            ),
            lambda: iter([0.5] * 1000),
            sign=key.sign,
        )
        sealer = Sealer(
            outbox,
            queue,
            flush_interval=0.2,
            flush_readings=BATCH,
            clock_synced=lambda: True,
            on_sealed=on_sealed,
        )
        tasks = [asyncio.create_task(sealer.run()), asyncio.create_task(publisher.run())]
        await asyncio.wait_for(publisher.connected.wait(), 10)
        started = time.perf_counter()
        for reading in readings:
            await queue.put(reading)
        blocks = -(-len(readings) // BATCH)
        # Polling the counters is the measurement itself: it sees what the agent did.
        while publisher.published < blocks:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        published = time.perf_counter() - started
        while sum(sealed) < len(readings) or (await outbox.stats()).undelivered:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        delivered = time.perf_counter() - started
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return len(readings) / published, len(readings) / delivered


async def collector_rate(work: Path, api_port: int, broker: Broker, blocks: int) -> float:
    """G3: pre-signed blocks of BATCH readings in, time until the last one is ACKed."""
    site = yaml.safe_load((work / "site.yaml").read_text(encoding="utf-8"))["site"]
    key = load_signing_key((work / "keys" / "gateway.key").read_bytes())
    topics = GatewayTopics(site["district"], site["enterprise"], site["gateway"])
    payloads, prev = [], GENESIS
    start = time.time()
    for seq in range(1, blocks + 1):
        header = BlockHeader(
            site["gateway"], site["enterprise"], site["district"], site["domain"],
            "bench0collector", seq, prev, iso_time(start), "synced",
        )  # fmt: skip
        payload = encode_block(header, _readings(BATCH, start + seq))
        prev = block_hash(payload)
        payloads.append((payload, key.sign(payload)))
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        started = time.perf_counter()
        for payload, signature in payloads:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.UserProperty = signature_properties(signature)
            await client.publish(topics.block, payload, qos=1, properties=properties)
        async with httpx.AsyncClient() as http:
            while True:
                gateways = (
                    await http.get(
                        f"http://127.0.0.1:{api_port}/v1/gateways",
                        headers={"Authorization": f"Bearer {TOKEN}"},
                    )
                ).json()["items"]
                if any(
                    g["epoch"] == "bench0collector" and g["acked_through"] == blocks
                    for g in gateways
                ):
                    break
                await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
    return blocks * BATCH / elapsed


def main() -> int:
    """Measure, print, and fail when a ratio misses its target."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--blocks", type=int, default=200)
    args = parser.parse_args()
    configure_logging(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="ganzhi-bench-"))
    broker = Broker(port=free_port(), workdir=work)
    api_port = free_port()
    collector: subprocess.Popen[bytes] | None = None
    try:
        broker.start()
        write_configs(work, "tankfarm", broker.url, free_port(), api_port)
        for argv in (
            ("collector", "keys", "init", "-c", "collector.yaml"),
            ("edge-agent", "keys", "init", "-c", "site.yaml"),
        ):
            subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=work, check=True)
        site = yaml.safe_load((work / "site.yaml").read_text(encoding="utf-8"))["site"]
        subprocess.run(
            [str(BIN / "collector"), "gateways", "add", "-c", "collector.yaml",
             "--gateway", site["gateway"], "--district", site["district"],
             "--public-key", "keys/gateway.key.pub"],
            cwd=work, check=True,
        )  # fmt: skip
        log = (work / "collector.log").open("wb")
        collector = subprocess.Popen(
            [str(BIN / "collector"), "serve", "-c", "collector.yaml"],
            cwd=work,
            stdout=log,
            stderr=log,
        )
        wait_for_port(api_port, timeout=30)
        readings = _readings(args.readings, time.time())
        verify = verify_rate()
        raw = asyncio.run(raw_publish_rate(broker, readings))
        agent, delivered = asyncio.run(agent_rates(work, readings))
        ingest = asyncio.run(collector_rate(work, api_port, broker, args.blocks))
    finally:
        if collector is not None:
            collector.terminate()
            collector.wait(timeout=30)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)
    figures = {
        "ed25519_verify_per_s": round(verify),
        "raw_publish_readings_per_s": round(raw),
        "agent_readings_per_s": round(agent),
        "g1_ratio_agent_to_raw": round(agent / raw, 3),
        "agent_delivered_readings_per_s": round(delivered),
        "collector_readings_per_s": round(ingest),
        "g3_ratio_collector_to_verify": round(ingest / verify, 3),
    }
    print(json.dumps(figures))
    ok = figures["g1_ratio_agent_to_raw"] >= 0.25 and figures["g3_ratio_collector_to_verify"] >= 1.5
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
