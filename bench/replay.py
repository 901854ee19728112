"""G5 replay: a backlog drains after the uplink returns while live blocks keep their latency.

Set-up per repeat: a fresh real Mosquitto (a broker kept across repeats would hold the last
repeat's collector session in the shared subscription group and hand it half the blocks), a
fresh real `collector serve` on SQLite, and the agent's outbox and publisher in this process
(acquisition stubbed: a live task seals a block of LIVE_READINGS readings every flush interval,
1,000 readings/s as 1,000 tags at 1 s with the default 0.2 s flush, and tells the publisher,
as the sealer does). The publisher runs with the site default `uplink.publish_rate` unless
`--publish-rate` says otherwise (`none`: no pacing).

Phases, in one repeat:
1. normal: uplink up, no backlog, live only for --normal-seconds: each live block's latency
   from its seal to the collector's ACK naming it (a second MQTT client subscribed to the
   gateway's ACK topic sees the ACK when the agent does) - the same-run baseline;
2. outage: the publisher is stopped; live sealing goes on; the backlog is sealed into the
   outbox as fast as this machine seals (--backlog readings in blocks of LIVE_READINGS, as the
   sealer cuts them at this rate);
3. replay: the publisher runs again; drain time = until an ACK's acked_through reaches the
   last block sealed during the outage; live latency of blocks sealed during the drain once
   the session is up (blocks sealed while it connects are outage blocks: backlog, sent after
   the whole backlog - one of them once made a "15 s stall" in the p99 of a short run);
   the process's RSS sampled every 0.5 s;
4. SIGTERM: a real `edge-agent run` (the site's own config, no simulator answering) starts on
   an outbox holding --sigterm-backlog readings; once the collector has ACKed its first
   blocks (a drain under way) and a second more, it gets SIGTERM: seconds to its exit.

Where a live block waits: a third MQTT client subscribed to the block topic sees each block
when the broker hands it out, splitting a live block's latency into agent (seal to the broker
handing it out: publisher lane, agent event loop, broker) and collector (broker to ACK: the
collector's queue, its batch, its commit, its ACK).

Figures (min/median/max over --repeats, each repeat on a fresh broker and collector):
- G5 drain readings/s (backlog readings / drain seconds; live readings not counted), target
  >= 20,000 (3.6 M in 180 s); drain seconds scaled to 3.6 M readings, target <= 180;
- G5 live p99 during the drain over normal live p99 (same run), target <= 2;
- G5 agent RSS peak during the drain over RSS at its start, target <= 1.1 (flat);
- G5 SIGTERM to exit of a real agent during a drain, target <= 5 s;
- supporting: live p50/p99, and the agent/collector shares of the live p99, normal and
  during the drain (series `live_latency_normal_ms` / `live_latency_drain_ms`: seq offset
  -> latency, for a plot).
What the report should say: the p99 ratio is measured on a 2-core machine shared by broker,
collector and agent (and other work): during a drain the collector takes a core, so live
latency is also CPU contention, not only queueing. Where live blocks waited before the lanes
at the collector (specs/lanes.py, collector/ingest/lanes.py): broker to ACK, behind the 50-70
backlog blocks of the agent's window queued FIFO at the collector (ratio 21x, 3.6 M backlog).
With the lanes a live block waits for the backlog batch in progress (at most 16 blocks) and
its own; the collector part is still most of the drain p99 (about 85 % of it).
Profiled per stage (timestamps at the broker hand-out, the collector's receive, batch taken,
planned, committed, ACK out; 2026-12-06, load 2-5): a 16-block batch took 25-150 ms (plan
1.4 ms a block in the event loop, store 1.3 ms a block + 5-9 ms a transaction, 3 ms more
waiting for the ACKs' PUBACKs), and in 2 of 7 runs the live block sealed at the drain's end
went out in the backlog lane (the outbox read found it before the sealer's notice). Since:
backlog batches sized to ~20 ms (collector.ingest.lanes.BacklogBudget), ACK PUBACKs awaited
beside the next batch (collector.ingest.ack_out), the notice waited for
(edge_agent.shell.publisher_lanes). Same run, before/after alternated, --backlog 400000, load
4-7: live p99 248/335/266 -> 83/109/168 ms (ratio 6.7/5.9/6.0 -> 2.2/2.9/4.7), p50 56-80 ->
27-42 ms, drain 25.4k/23.7k/25.7k -> 36.3k/20.6k/20.7k readings/s. What is left is CPU: on
2 cores at that load a 1-block transaction alone takes 8-50 ms.
Measured 2026-12-06 (--backlog 1200000, 3 repeats, machine at load 9-13 from other benches:
absolute rates are a fraction of a quiet run's): drain 2.7k/6.9k/7.5k readings/s, p99 ratio
2.4/3.3/4.2 (normal p99 203-307 ms, drain p99 741-869 ms), RSS ratio 1.01-1.05, SIGTERM
during a drain 2.05-2.10 s. Before the lanes, same machine at load ~4: drain 25.8k/s,
p99 ratio 21 (1,052 ms against 50 ms).
A run takes about (normal 15 s + seal ~50 s + drain ~120 s + SIGTERM ~20 s) per repeat at the
defaults on a quiet machine: about 3.5 min a repeat, 10 min for 3 (much longer on a loaded
one); `make bench` may pass `--backlog 1200000` (the 3.6 M time is scaled from the rate).

Run: `.venv/bin/python -m bench.replay [--backlog 3600000] [--repeats 3] [--json out.json]`.
Exit 1 when a gated median misses its target.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt

from bench.procfs import memory_kib
from bench.results import BenchResult, Figure, add_json_argument, finished
from bench.rig import Scratch
from demo.broker import Broker, free_port, wait_for_port
from edge_agent.config import load_site_config
from edge_agent.config.sections import UplinkConfig
from edge_agent.config.site import SiteConfig
from edge_agent.core.plan_compile import identity_of
from edge_agent.shell.collector_keys import read_collector_keys
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.publisher import Publisher
from edge_agent.shell.uplink import UplinkSettings
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
SIGTERM_TARGET = 5.0
SIGTERM_BACKLOG = 400_000
SEQ_KEY = b'"seq":'
STALL_SECONDS = 60.0


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
    return memory_kib(os.getpid())[0] / 1024


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _seal_backlog(outbox: Outbox, readings: int) -> int:
    """Seal `readings` in blocks of LIVE_READINGS; the number of readings sealed."""
    blocks = -(-readings // LIVE_READINGS)
    for _ in range(blocks):
        await outbox.seal(_readings(LIVE_READINGS, time.time()), now=time.time(), clock_synced=True)
    return blocks * LIVE_READINGS


@dataclass
class AckWatch:
    """When the collector's ACK for each seq of `epoch` went out, and the highest acked_through.

    `epoch` None: the first epoch heard.
    """

    epoch: str | None = None
    acked_at: dict[int, float] = field(default_factory=dict)
    acked_through: int = 0
    moved: asyncio.Event = field(default_factory=asyncio.Event)

    async def listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            body = json.loads(bytes(message.payload))
            now = time.perf_counter()
            if body.get("epoch") != (self.epoch or body.get("epoch")):
                continue
            self.epoch = body["epoch"]
            if isinstance(body.get("seq"), int):
                self.acked_at.setdefault(body["seq"], now)
            self.acked_through = max(self.acked_through, int(body["acked_through"]))
            self.moved.set()

    async def until(self, seq: int, seconds: float) -> None:
        """Wait until acked_through reaches `seq` (TimeoutError after `seconds`)."""
        async with asyncio.timeout(seconds):
            while self.acked_through < seq:
                self.moved.clear()
                await self.moved.wait()


@dataclass
class BlockWatch:
    """When the broker first handed out each seq (a plain subscriber on the block topic)."""

    seen_at: dict[int, float] = field(default_factory=dict)

    async def listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = bytes(message.payload)
            now = time.perf_counter()
            # Canonical JSON, keys sorted: "seq" comes after the records, near the end.
            at = payload.rfind(SEQ_KEY) + len(SEQ_KEY)
            end = payload.index(b",", at)
            self.seen_at.setdefault(int(payload[at:end]), now)


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


@dataclass(frozen=True)
class Latencies:
    """Live blocks' latency (s), whole and split at the broker, in seq order."""

    total: list[float]
    agent: list[float]
    collector: list[float]

    @classmethod
    def of(cls, live: Live, blocks: BlockWatch, acks: AckWatch, seqs: range) -> Latencies:
        done = [s for s in seqs if s in live.sealed_at and s in acks.acked_at]
        split = [s for s in done if s in blocks.seen_at]
        return cls(
            [acks.acked_at[s] - live.sealed_at[s] for s in done],
            [blocks.seen_at[s] - live.sealed_at[s] for s in split],
            [acks.acked_at[s] - blocks.seen_at[s] for s in split],
        )


async def _until_drained(acks: AckWatch, last: int, publisher: Publisher) -> float:
    """Wait until the collector has ACKed through `last`; this process's peak RSS meanwhile."""
    rss_peak = _rss_mb()
    moved_at, through = time.perf_counter(), acks.acked_through
    while acks.acked_through < last:
        with contextlib.suppress(TimeoutError):
            await acks.until(last, 0.5)
        rss_peak = max(rss_peak, _rss_mb())
        if acks.acked_through > through:
            moved_at, through = time.perf_counter(), acks.acked_through
        elif time.perf_counter() - moved_at > STALL_SECONDS:
            raise RuntimeError(
                f"no ACK moved for {STALL_SECONDS:g} s: acked through {through} of {last},"
                f" {publisher.published} blocks published"
            )
    return rss_peak


def _publish_rate(wanted: str | None) -> float | None:
    """`--publish-rate`: a number, `none` (no pacing), or absent (the site config default)."""
    if wanted is None:
        default = UplinkConfig.model_fields["publish_rate"].default
        return None if default is None else float(default)
    return None if wanted == "none" else float(wanted)


async def _replay(
    work: Path, broker: Broker, args: argparse.Namespace
) -> tuple[dict[str, float], dict[str, list[list[float]]]]:
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
        args.max_inflight or config.uplink.max_inflight,
        publish_rate=_publish_rate(args.publish_rate),
    )
    acks = AckWatch()
    blocks = BlockWatch()
    async with (
        open_outbox(work / "bench-outbox.db", identity_of(config), key) as outbox,
        aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as ack_sub,
        aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as blk_sub,
    ):
        await ack_sub.subscribe(topics.ack, qos=1)
        await blk_sub.subscribe(topics.block, qos=0)
        watching = [
            asyncio.create_task(acks.listen(ack_sub)),
            asyncio.create_task(blocks.listen(blk_sub)),
        ]
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
            await asyncio.sleep(args.normal_seconds)
            last_normal = (await outbox.stats()).last_seq
            await asyncio.sleep(1.0)  # let the last normal ones be answered
            normal = Latencies.of(live, blocks, acks, range(first_normal, last_normal + 1))
            if not normal.total:
                raise RuntimeError(
                    f"no live block ACKed: {publisher.published} published, {uplink!r}"
                )
            # 2. outage: the publisher stops, sealing goes on
            publisher.stop()
            uplink.cancel()
            await asyncio.gather(uplink, return_exceptions=True)
            started = time.perf_counter()
            backlog = await _seal_backlog(outbox, args.backlog)
            seal_seconds = time.perf_counter() - started
            last_backlog = (await outbox.stats()).last_seq
            # 3. replay
            rss_start = _rss_mb()
            started = time.perf_counter()
            uplink = asyncio.create_task(publisher.run())
            await asyncio.wait_for(publisher.connected.wait(), 10)
            # Sealed before the session was up: outage blocks, backlog by design (they go
            # last, after the whole backlog); live from here on.
            first_live = (await outbox.stats()).last_seq + 1
            rss_peak = await _until_drained(acks, last_backlog, publisher)
            drain_seconds = time.perf_counter() - started
            last_drain = (await outbox.stats()).last_seq
            await asyncio.sleep(1.0)
            during = Latencies.of(live, blocks, acks, range(first_live, last_drain + 1))
        finally:
            publisher.stop()
            for task in (living, uplink, *watching):
                task.cancel()
            await asyncio.gather(living, uplink, *watching, return_exceptions=True)
    figures = {
        "backlog_readings": backlog,
        "seal_readings_per_s": backlog / seal_seconds,
        "drain_seconds": drain_seconds,
        "drain_readings_per_s": backlog / drain_seconds,
        "rss_start_mb": rss_start,
        "rss_peak_mb": rss_peak,
        "rss_ratio": rss_peak / rss_start,
    }
    return _with_latencies(figures, normal, during)


def _with_latencies(
    figures: dict[str, float], normal: Latencies, during: Latencies
) -> tuple[dict[str, float], dict[str, list[list[float]]]]:
    """Add the live latency figures of both phases; the latency series to plot."""
    figures["p99_ratio"] = _percentile(during.total, 0.99) / _percentile(normal.total, 0.99)
    for phase, lat in (("normal", normal), ("drain", during)):
        figures[f"{phase}_samples"] = len(lat.total)
        figures[f"{phase}_p50_ms"] = 1000 * _percentile(lat.total, 0.5)
        figures[f"{phase}_p99_ms"] = 1000 * _percentile(lat.total, 0.99)
        figures[f"{phase}_agent_p99_ms"] = 1000 * _percentile(lat.agent, 0.99)
        figures[f"{phase}_collector_p99_ms"] = 1000 * _percentile(lat.collector, 0.99)
    series = {
        f"live_latency_{phase}_ms": [[i, 1000 * v] for i, v in enumerate(lat.total)]
        for phase, lat in (("normal", normal), ("drain", during))
    }
    return figures, series


async def _sigterm_during_drain(
    work: Path, broker: Broker, config: SiteConfig, readings: int
) -> float:
    """Seconds from SIGTERM to exit of a real `edge-agent run` draining `readings`."""
    key = load_signing_key(config.signing.key_file.read_bytes())
    async with open_outbox(config.outbox.path, identity_of(config), key) as outbox:
        await _seal_backlog(outbox, readings)
        epoch = outbox.epoch
    topics = GatewayTopics(config.site.district, config.site.enterprise, config.site.gateway)
    acks = AckWatch(epoch=epoch)
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as ack_sub:
        await ack_sub.subscribe(topics.ack, qos=1)
        watching = asyncio.create_task(acks.listen(ack_sub))
        with (work / "agent.log").open("wb") as log:
            agent = await asyncio.create_subprocess_exec(
                str(BIN / "edge-agent"), "run", "-c", "site.yaml", cwd=work, stdout=log, stderr=log
            )
        try:
            await acks.until(10, 60)  # the drain is under way
            await asyncio.sleep(1.0)
            started = time.perf_counter()
            agent.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(agent.wait(), 60)
            took = time.perf_counter() - started
        finally:
            if agent.returncode is None:
                agent.kill()
            await agent.wait()
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
    print(
        f"SIGTERM during a drain: acked through {acks.acked_through} of"
        f" {-(-readings // LIVE_READINGS)} blocks, exit {agent.returncode} after {took:.2f} s",
        file=sys.stderr,
    )
    return took


def _one_repeat(
    args: argparse.Namespace,
) -> tuple[dict[str, float], dict[str, list[list[float]]]]:
    """A fresh broker, site, keys and collector (SQLite) for one repeat."""
    scratch = Scratch.new("ganzhi-replay-")
    work, broker = scratch.work, scratch.broker
    api_port = free_port()
    try:
        broker.start()
        scratch.start_collector(api_port)
        wait_for_port(api_port, timeout=30)
        figures, series = asyncio.run(_replay(work, broker, args))
        if args.sigterm_backlog > 0:
            config = load_site_config(work / "site.yaml")
            figures["sigterm_seconds"] = asyncio.run(
                _sigterm_during_drain(work, broker, config, args.sigterm_backlog)
            )
        return figures, series
    finally:
        scratch.stop(30)


def _figures(runs: list[dict[str, float]], args: argparse.Namespace) -> list[Figure]:
    def values(name: str) -> tuple[float, ...]:
        return tuple(run[name] for run in runs)

    rate = _publish_rate(args.publish_rate)
    paced = "no publish_rate" if rate is None else f"publish_rate {rate:g} blocks/s"
    out = [
        Figure(
            "G5", "backlog drain rate", "readings/s", values("drain_readings_per_s"),
            DRAIN_TARGET, "at_least",
            note=f"{runs[0]['backlog_readings']:,.0f}-reading backlog of {LIVE_READINGS}-reading"
            f" blocks, {paced}, collector on SQLite",
        ),
        Figure(
            "G5", "drain time of a 3.6 M-reading backlog", "s",
            tuple(G5_BACKLOG / r for r in values("drain_readings_per_s")), G5_SECONDS, "at_most",
            note="3.6 M over the measured drain rate",
        ),
        Figure(
            "G5", "live p99 during the drain over normal live p99", "ratio", values("p99_ratio"),
            P99_RATIO_TARGET, "at_most",
            baseline="live p99 (seal to the collector's ACK) without a backlog, same run",
        ),
        Figure(
            "G5", "agent RSS peak during the drain over RSS at its start", "ratio",
            values("rss_ratio"), RSS_TARGET, "at_most", baseline="RSS when the drain starts",
        ),
        Figure("", "live p50, normal", "ms", values("normal_p50_ms"), direction="at_most"),
        Figure("", "live p99, normal", "ms", values("normal_p99_ms"), direction="at_most"),
        Figure("", "live p50 during the drain", "ms", values("drain_p50_ms"), direction="at_most"),
        Figure("", "live p99 during the drain", "ms", values("drain_p99_ms"), direction="at_most"),
        Figure(
            "", "live p99 during the drain, agent part (seal to broker)", "ms",
            values("drain_agent_p99_ms"), direction="at_most",
        ),
        Figure(
            "", "live p99 during the drain, collector part (broker to ACK)", "ms",
            values("drain_collector_p99_ms"), direction="at_most",
        ),
        Figure("", "agent RSS peak during the drain", "MiB", values("rss_peak_mb"),
               direction="at_most"),
    ]  # fmt: skip
    if "sigterm_seconds" in runs[0]:
        out.append(
            Figure(
                "G5",
                "SIGTERM to exit of edge-agent run during a drain",
                "s",
                values("sigterm_seconds"),
                SIGTERM_TARGET,
                "at_most",
                note=f"{args.sigterm_backlog:,} readings in the outbox, SIGTERM 1 s after"
                " the collector ACKed the 10th block",
            )
        )
    return out


def main() -> int:
    """Measure, print, write --json; exit 1 when a gated median misses its target."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=G5_BACKLOG, help="readings")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--normal-seconds", type=float, default=15.0)
    parser.add_argument("--max-inflight", type=int, help="default: the site config's")
    parser.add_argument(
        "--publish-rate", help="blocks/s, or none; default: the uplink.publish_rate default"
    )
    parser.add_argument(
        "--sigterm-backlog", type=int, default=SIGTERM_BACKLOG, help="readings; 0: skip"
    )
    add_json_argument(parser)
    args = parser.parse_args()
    configure_logging(level=logging.WARNING, stream=sys.stderr)
    runs: list[dict[str, float]] = []
    series: dict[str, list[list[float]]] = {}
    for _ in range(args.repeats):
        figures, series = _one_repeat(args)
        runs.append(figures)
        print(json.dumps({k: round(v, 3) for k, v in figures.items()}), file=sys.stderr)
    result = BenchResult(
        "replay",
        tuple(_figures(runs, args)),
        series=series,  # the last repeat's
        notes=(
            (
                "2-core machine shared by broker, collector and agent: during a drain the"
                " collector takes a core, so live latency is also CPU contention"
            ),
        ),
    )
    return finished(args.json, result)


if __name__ == "__main__":
    sys.exit(main())
