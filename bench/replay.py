"""G5 replay: a backlog drains after the uplink returns while live blocks keep their latency.

Set-up per repeat: a fresh real Mosquitto (a broker kept across repeats would hold the last
repeat's collector session in the shared subscription group and hand it half the blocks), a
fresh real `collector serve` on SQLite, and the agent's outbox and publisher in this process
(acquisition stubbed: a live task seals a block of LIVE_READINGS readings every flush interval,
1,000 readings/s as 1,000 tags at 1 s with the default 0.2 s flush, and tells the publisher,
as the sealer does).

Phases, in one run:
1. normal: uplink up, no backlog, live only for --normal-seconds: each live block's latency
   from its seal to the collector's ACK naming it (a second MQTT client subscribed to the
   gateway's ACK topic sees the ACK when the agent does) - the same-run baseline;
2. outage: the publisher is stopped; live sealing goes on; the backlog is sealed into the
   outbox as fast as this machine seals (--backlog readings in blocks of LIVE_READINGS, as the
   sealer cuts them at this rate);
3. replay: the publisher runs again; drain time = until an ACK's acked_through reaches the
   last block sealed during the outage; live latency of blocks sealed during the drain;
   the process's RSS sampled every 0.5 s.

Figures per repeat and min/median/max over --repeats: drain readings/s (backlog readings /
drain seconds, live readings not counted), live p50/p99 during the drain and normal, the
ratio of the p99s, RSS at the start of the drain and its peak during it.
Targets (G5, ../shared/reference/performance.md section 5): a 3.6 M-reading backlog drains in
<= 180 s, i.e. >= 20,000 readings/s; live p99 during the drain <= 2x normal; RSS peak <= 1.1x
RSS at the start (flat). Exit 1 when a median misses a target.

Run: `.venv/bin/python -m bench.replay [--backlog 3600000] [--repeats 3]`. One JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import yaml

from demo.__main__ import write_configs
from demo.broker import Broker, free_port, wait_for_port
from edge_agent.config import load_site_config
from edge_agent.shell.collector_keys import read_collector_keys
from edge_agent.shell.outbox import Outbox, open_outbox
from edge_agent.shell.publisher import Publisher, UplinkSettings
from edge_agent.shell.runtime import identity_of
from hostkit.logs import configure_logging
from specs.records import Quality, Reading, iso_time
from specs.signing import load_signing_key
from specs.topics import GatewayTopics

BIN = Path(sys.executable).parent
FLUSH_INTERVAL = 0.2
LIVE_READINGS = 200  # 1,000 tags at 1 s, cut every 0.2 s
G5_BACKLOG = 3_600_000
G5_SECONDS = 180.0
DRAIN_TARGET = G5_BACKLOG / G5_SECONDS  # readings/s
P99_RATIO_TARGET = 2.0
RSS_TARGET = 1.1


def _readings(count: int, start: float) -> tuple[Reading, ...]:
    return tuple(
        Reading(
            point=f"T{i % 50:03d}-LT-01",
            quota="WHP-LT",
            t=iso_time(start),
            value=round(1.0 + (i % 997) * 0.01, 3),
            unit="m",
            quality=Quality.GOOD,
        )
        for i in range(count)
    )


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class AckWatch:
    """When the collector's ACK for each seq went out, and the highest acked_through."""

    acked_at: dict[int, float] = field(default_factory=dict)
    acked_through: int = 0
    moved: asyncio.Event = field(default_factory=asyncio.Event)

    async def listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            body = json.loads(bytes(message.payload))
            now = time.perf_counter()
            if isinstance(body.get("seq"), int):
                self.acked_at.setdefault(body["seq"], now)
            self.acked_through = max(self.acked_through, int(body["acked_through"]))
            self.moved.set()


@dataclass
class Live:
    """Seals a live block every flush interval and hands it to the publisher."""

    outbox: Outbox
    publisher: Publisher
    sealed_at: dict[int, float] = field(default_factory=dict)

    async def run(self) -> None:
        next_at = time.perf_counter()
        while True:
            next_at += FLUSH_INTERVAL
            block = await self.outbox.seal(
                _readings(LIVE_READINGS, time.time()), now=time.time(), clock_synced=True
            )
            self.sealed_at[block.seq] = time.perf_counter()
            self.publisher.notify_sealed(block.seq)
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))


def _latencies(live: Live, watch: AckWatch, seqs: range) -> list[float]:
    return [
        watch.acked_at[seq] - live.sealed_at[seq]
        for seq in seqs
        if seq in live.sealed_at and seq in watch.acked_at
    ]


async def _replay(
    work: Path, broker: Broker, backlog: int, normal_seconds: float, window: int | None
) -> dict[str, float]:
    config = load_site_config(work / "site.yaml")
    key = load_signing_key(config.signing.key_file.read_bytes())
    collector_key = read_collector_keys(config.uplink.collector_key_files)
    topics = GatewayTopics(config.site.district, config.site.enterprise, config.site.gateway)
    settings = UplinkSettings(
        "127.0.0.1",
        broker.port,
        "bench-replay",
        30,
        600,
        config.uplink.ack_timeout,
        window or config.uplink.max_inflight,
        publish_rate=None,
    )
    watch = AckWatch()
    async with (
        open_outbox(work / "bench-outbox.db", identity_of(config), key) as outbox,
        aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as acks,
    ):
        await acks.subscribe(topics.ack, qos=1)
        watching = asyncio.create_task(watch.listen(acks))
        publisher = Publisher(
            outbox, topics, collector_key, settings, lambda: iter([0.5] * 1000), sign=key.sign
        )
        live = Live(outbox, publisher)
        uplink = asyncio.create_task(publisher.run())
        await asyncio.wait_for(publisher.connected.wait(), 10)
        living = asyncio.create_task(live.run())
        try:
            # 1. normal
            first_normal = (await outbox.stats()).last_seq + 1
            await asyncio.sleep(normal_seconds)
            last_normal = (await outbox.stats()).last_seq
            await asyncio.sleep(1.0)  # let the last normal ones be answered
            normal = _latencies(live, watch, range(first_normal, last_normal + 1))
            # 2. outage: the publisher stops, sealing goes on
            uplink.cancel()
            await asyncio.gather(uplink, return_exceptions=True)
            blocks = -(-backlog // LIVE_READINGS)
            started = time.perf_counter()
            for _ in range(blocks):
                await outbox.seal(
                    _readings(LIVE_READINGS, time.time()), now=time.time(), clock_synced=True
                )
            seal_seconds = time.perf_counter() - started
            last_backlog = (await outbox.stats()).last_seq
            # 3. replay
            rss_start = _rss_mb()
            rss_peak = rss_start
            started = time.perf_counter()
            uplink = asyncio.create_task(publisher.run())
            while watch.acked_through < last_backlog:
                watch.moved.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        await watch.moved.wait()
                rss_peak = max(rss_peak, _rss_mb())
            drain_seconds = time.perf_counter() - started
            last_drain = (await outbox.stats()).last_seq
            await asyncio.sleep(1.0)
            during = _latencies(live, watch, range(last_backlog + 1, last_drain + 1))
        finally:
            for task in (living, uplink, watching):
                task.cancel()
            await asyncio.gather(living, uplink, watching, return_exceptions=True)
    backlog_readings = blocks * LIVE_READINGS
    return {
        "backlog_readings": backlog_readings,
        "seal_readings_per_s": backlog_readings / seal_seconds,
        "drain_seconds": drain_seconds,
        "drain_readings_per_s": backlog_readings / drain_seconds,
        "normal_samples": len(normal),
        "normal_p50_ms": 1000 * _percentile(normal, 0.5),
        "normal_p99_ms": 1000 * _percentile(normal, 0.99),
        "drain_samples": len(during),
        "drain_p50_ms": 1000 * _percentile(during, 0.5),
        "drain_p99_ms": 1000 * _percentile(during, 0.99),
        "p99_ratio": _percentile(during, 0.99) / _percentile(normal, 0.99),
        "rss_start_mb": rss_start,
        "rss_peak_mb": rss_peak,
        "rss_ratio": rss_peak / rss_start,
    }


def _one_repeat(backlog: int, normal_seconds: float, window: int | None) -> dict[str, float]:
    """A fresh broker, site, keys and collector (SQLite) for one repeat."""
    work = Path(tempfile.mkdtemp(prefix="ganzhi-replay-"))
    api_port = free_port()
    collector: subprocess.Popen[bytes] | None = None
    broker = Broker(port=free_port(), workdir=work)
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
            cwd=work, check=True, capture_output=True,
        )  # fmt: skip
        with (work / "collector.log").open("wb") as log:
            collector = subprocess.Popen(
                [str(BIN / "collector"), "serve", "-c", "collector.yaml"],
                cwd=work,
                stdout=log,
                stderr=log,
            )
        wait_for_port(api_port, timeout=30)
        return asyncio.run(_replay(work, broker, backlog, normal_seconds, window))
    finally:
        if collector is not None:
            collector.terminate()
            collector.wait(timeout=30)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    """Measure, print one JSON line, and fail when a median misses its target."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=G5_BACKLOG, help="readings")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--normal-seconds", type=float, default=15.0)
    parser.add_argument("--max-inflight", type=int, help="default: the site config's")
    args = parser.parse_args()
    configure_logging(level=logging.WARNING)
    runs: list[dict[str, float]] = []
    for _ in range(args.repeats):
        runs.append(_one_repeat(args.backlog, args.normal_seconds, args.max_inflight))
        print(json.dumps({k: round(v, 3) for k, v in runs[-1].items()}), file=sys.stderr)
    figures: dict[str, object] = {
        "repeats": len(runs),
        "backlog_readings": runs[0]["backlog_readings"],
    }
    for name in (
        "drain_readings_per_s", "drain_seconds", "normal_p50_ms", "normal_p99_ms",
        "drain_p50_ms", "drain_p99_ms", "p99_ratio", "rss_start_mb", "rss_peak_mb", "rss_ratio",
    ):  # fmt: skip
        values = [run[name] for run in runs]
        figures[name] = {
            "min": round(min(values), 3),
            "median": round(statistics.median(values), 3),
            "max": round(max(values), 3),
        }
    print(json.dumps(figures))
    median = statistics.median
    ok = (
        median(run["drain_readings_per_s"] for run in runs) >= DRAIN_TARGET
        and median(run["p99_ratio"] for run in runs) <= P99_RATIO_TARGET
        and median(run["rss_ratio"] for run in runs) <= RSS_TARGET
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
