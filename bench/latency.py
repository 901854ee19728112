"""G6 latency: from poll (each reading's time `t`) to stored at the collector, per protocol.

One site per repeat, all real processes on loopback: a fresh Mosquitto, `collector serve`
(SQLite), the tank-farm Modbus simulator, the slope OPC UA simulator (asyncua) and
`edge-agent run` on a generated site map with three devices, each polled every `--poll`
seconds:

* ``modbus``: one Modbus TCP device, 10 points (the comparison: `t` is the agent's read);
* ``opcua-subscribe``: one OPC UA device in subscribe mode (the default; data-change
  subscription with the site map's default intervals unless `--publishing` is given), 10
  nodes (GNSS stations 1-3 and the rain gauge); `t` is the value's SourceTimestamp;
* ``opcua-poll``: one OPC UA device in poll mode (one Read of all its nodes per poll), 10
  other nodes (GNSS stations 4-6 and the inclinometer); `t` is the value's SourceTimestamp.

This process is a second MQTT client on the broker: it decodes every block the agent publishes
(each reading's point and `t`) and notes when the collector's signed ACK naming that block
(`seq`) arrives. The collector sends an ACK only after its database commit, so ACK arrival
minus `t` is an upper bound of poll -> stored (it adds one loopback MQTT hop). The first
`--warmup` seconds of readings are left out (connects, first values).

Figures per protocol, min/median/max over `--repeats`: p50, p99 and max of that latency.
Target (G6, issue 11.4): p99 <= flush interval + 50 ms (the flush interval is the site map's
`outbox.flush_interval`, 200 ms), gated on the median of the repeats' p99. The max is shown,
not gated: one stall of this shared 2-core machine moves it. The series are each protocol's
latency distribution (percentile -> seconds) of the last repeat, for a plot.

What `t` is, and so what each OPC UA figure includes. The metric is poll -> stored, and for
Modbus `t` is the agent's read. For OPC UA `t` is the SourceTimestamp, the moment the server
sampled the value, so the simulator is set up to sample when a real server would for the
agent's request:

* poll mode: the simulator runs with `--fresh-reads`, so a Read asking MaxAge 0 (the driver
  always does) is answered with a value sampled at that moment: `t` is taken during the
  agent's Read, as Modbus's is. (Without it `t` would be the simulator's last update, up to an
  update interval before the poll, and the figure would be that age plus the agent's time.)
* subscribe mode: the simulator samples (writes) every `--ua-interval` seconds, by default the
  poll, as a server sampling at the requested sampling interval (the poll) does; the change
  then waits at the server for the next publish, up to one publishing interval (granted: the
  agent logs it as ``opcua_subscription_created``, shown in the note), before the agent has
  it. That wait is the server's, not the agent's; it is inside this figure, so the
  subscription's figure is sample -> stored, at most one publishing interval more than
  poll -> stored. The agent hands each change on when it arrives, not at its next poll.

A same-run figure per OPC UA protocol, for the record: its p99 over Modbus's p99 (not gated:
the devices' readings share blocks, so each protocol's wait in the sealer depends on the
phase of the others' polls). The stages (`t->sealed` per protocol, then `sealed->published`
and `published->acked` per block) say where the time goes.

History (3 repeats, this 2-core machine under load 4-5): at 1 s publishing and 0.5 s
simulator updates (before 2026-12-06) the subscription and poll p99 were 0.36-0.64 s (median
0.449): a change waited at the server up to a second for the publish, and a Read returned the
simulator's last update, up to 0.5 s old. With the 20 ms default publishing interval, pushed
changes and fresh Reads: subscribe p99 0.223-0.236 s, poll 0.227-0.247 s, Modbus
0.227-0.242 s (25 ms publishing gave a subscribe median of 0.253 s, 10 ms 0.226 s). Before
a53a8fd a subscribed value also waited in the driver for the next poll (1.66 s over Modbus at
1 s). `published->acked` was about 45 ms at p50 while paho left Nagle on for the collector's
ACK; 5 ms since.

Bounded time: about (`--warmup` + `--seconds` + ~10 s set-up) per repeat, 3 x 40 s at the
defaults. Run: `.venv/bin/python -m bench.latency [--repeats 3] [--seconds 20] [--json PATH]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from bench.results import BenchResult, Figure, add_json_argument, write_result
from bench.rig import (
    BIN,
    Scratch,
    init_keys,
    modbus_tcp_device,
    tank_points,
    tankfarm_configs,
)
from demo.broker import free_port, wait_for_port
from specs.ack import decode_ack
from specs.block import decode_block
from specs.encoding import decode_payload, encoding_of
from specs.records import Reading, parse_iso_time

MARGIN_S = 0.050  # G6: p99 <= flush interval + 50 ms
STATIONS = 3  # slope simulator: 3 GNSS stations x 3 axes, and the rain gauge: 10 nodes
PROTOCOLS = ("modbus", "opcua-subscribe", "opcua-poll")
_PREFIX = {"T": "modbus", "S": "opcua-subscribe", "P": "opcua-poll"}


def _modbus_device(port: int, poll: float) -> dict[str, Any]:
    points = [point for tank in (1, 2) for point in tank_points(tank, tank)]
    return modbus_tcp_device("plc", port, points, poll=poll)


def _opcua_device(
    port: int, mode: str, prefix: str, poll: float, publishing: float | None
) -> dict[str, Any]:
    """Subscribe: GNSS stations 1-3 and the rain gauge; poll: stations 4-6, inclinometer.

    Disjoint nodes: a poll device's fresh Read writes its nodes, which must not count as
    changes of the subscribed ones.
    """
    first = 1 if mode == "subscribe" else STATIONS + 1
    nodes = [
        (f"{prefix}{n:02d}-{axis}-01", f"BP-{axis}", f"ns=2;s=Slope.G{n}.{axis[1]}")
        for n in range(first, first + STATIONS)
        for axis in ("GX", "GY", "GZ")
    ]
    if mode == "subscribe":
        nodes.append((f"{prefix}01-RF-01", "BP-RF", "ns=2;s=Slope.R1.Rain"))
    else:
        nodes.append((f"{prefix}01-GX-02", "BP-GX", "ns=2;s=Slope.I1.Angle"))
    device: dict[str, Any] = {
        "id": f"slope-{mode}",
        "driver": "opcua",
        "endpoint": f"opc.tcp://127.0.0.1:{port}",
        "mode": mode,
        "poll": poll,
        "points": [{"point": p, "quota": q, "node": n} for p, q, n in nodes],
    }
    if mode == "subscribe" and publishing is not None:
        device["publishing_interval"] = publishing
    return device


@dataclass
class Watch:
    """What this MQTT client saw: each block's readings, and when each block's ACK came."""

    readings: dict[int, list[tuple[str, float, bool]]] = field(default_factory=dict)
    sealed_at: dict[int, float] = field(default_factory=dict)  # the block header's time
    seen_at: dict[int, float] = field(default_factory=dict)  # the block reached this client
    acked_at: dict[int, float] = field(default_factory=dict)

    async def listen(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            now = time.time()
            payload = bytes(message.payload)
            if str(message.topic).endswith("/down/ack"):
                ack = decode_ack(payload)
                if ack.seq is not None:
                    self.acked_at.setdefault(ack.seq, now)
                continue
            found = getattr(message.properties, "UserProperty", None) or []
            encoding = encoding_of([(str(k), str(v)) for k, v in found])
            block = decode_block(decode_payload(payload, encoding))
            self.sealed_at.setdefault(block.header.seq, parse_iso_time(block.header.sealed_at))
            self.seen_at.setdefault(block.header.seq, now)
            self.readings.setdefault(
                block.header.seq,
                [
                    (r.point, parse_iso_time(r.t), "held" in r.flags)
                    for r in block.records
                    if isinstance(r, Reading)
                ],
            )

    def latencies(self, since: float) -> dict[str, list[float]]:
        """Per protocol: ACK arrival minus `t`, for readings taken at or after `since`.

        Also, per protocol, `<protocol> t->sealed` (the reading's wait in the agent before its
        block was sealed: acquisition, queueing, the flush interval) and, per block, the stages
        after it: `sealed->published` (seal, sign, store, publish, broker) and
        `published->acked` (collector: verify, store, commit, ACK).
        """
        found: dict[str, list[float]] = defaultdict(list)
        for seq, rows in self.readings.items():
            acked = self.acked_at.get(seq)
            sealed = self.sealed_at[seq]
            fresh = [(point, t) for point, t, _held in rows if t >= since]
            if acked is None or not fresh:
                continue
            for point, t in fresh:
                protocol = _PREFIX[point[0]]
                found[protocol].append(acked - t)
                found[f"{protocol} t->sealed"].append(sealed - t)
            found["sealed->published"].append(self.seen_at[seq] - sealed)
            found["published->acked"].append(acked - self.seen_at[seq])
        return found


class Site:
    """Broker, simulators, collector and agent of one repeat, in a scratch directory."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.scratch = Scratch.new("ganzhi-latency-")
        self.work, self.broker = self.scratch.work, self.scratch.broker
        self.gateway = ""
        self.flush_interval = 0.0
        self.granted: float | None = None  # the subscription's publishing interval, seconds

    def start(self) -> None:
        """Write the maps and keys, start everything but the agent (`start_agent`)."""
        args = self.args
        self.broker.start()
        sim_port, api_port, ua_port = free_port(), free_port(), free_port()
        with tankfarm_configs(self.work, self.broker.url, sim_port, api_port) as site:
            site["devices"] = [
                _modbus_device(sim_port, args.poll),
                _opcua_device(ua_port, "subscribe", "S", args.poll, args.publishing),
                _opcua_device(ua_port, "poll", "P", args.poll, args.publishing),
            ]
            site.pop("alarms", None)
        self.gateway = site["site"]["gateway"]
        self.flush_interval = _seconds(site["outbox"]["flush_interval"])
        init_keys(self.work)
        python = str(BIN / "python")
        self.scratch.spawn(
            "sim", python, "-m", "simulators", "--port", str(sim_port), "--tanks", "2"
        )
        self.scratch.spawn(
            "slope", python, "-m", "simulators.slope_opcua", "--port", str(ua_port),
            "--stations", str(2 * STATIONS), "--interval", str(args.ua_interval or args.poll),
            "--fresh-reads",
        )  # fmt: skip
        self.scratch.spawn("collector", str(BIN / "collector"), "serve", "-c", "collector.yaml")
        wait_for_port(sim_port, timeout=120)
        wait_for_port(ua_port, timeout=120)
        wait_for_port(api_port, timeout=120)

    def start_agent(self) -> None:
        self.scratch.spawn("agent", str(BIN / "edge-agent"), "run", "-c", "site.yaml")

    def granted_publishing(self) -> float | None:
        """The publishing interval the server granted, as the agent logged it (seconds)."""
        log = (self.work / "agent.log").read_text(encoding="utf-8", errors="replace")
        found = re.search(r"opcua_subscription_created .*?publishing_interval=([0-9.e-]+)s", log)
        return None if found is None else float(found.group(1))

    def stop(self, *, keep: bool = False) -> None:
        self.scratch.stop(15, keep=keep)


def _seconds(value: object) -> float:
    """A site map duration (`200ms`, `1s`, or a number) in seconds."""
    if isinstance(value, int | float):
        return float(value)
    text = str(value)
    if text.endswith("ms"):
        return float(text[:-2]) / 1000
    return float(text.rstrip("s"))


async def _measure(site: Site, warmup: float, seconds: float) -> dict[str, list[float]]:
    watch = Watch()
    async with aiomqtt.Client(
        "127.0.0.1", site.broker.port, protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        base = f"gz/1/+/+/{site.gateway}"
        await client.subscribe(f"{base}/up/block", qos=1)
        await client.subscribe(f"{base}/down/ack", qos=1)
        listening = asyncio.create_task(watch.listen(client))
        site.start_agent()
        since = time.time() + warmup
        await asyncio.sleep(warmup + seconds)
        await asyncio.sleep(2.0)  # the window's last blocks: sealed, stored, acked
        listening.cancel()
        site.granted = site.granted_publishing()
        with contextlib.suppress(asyncio.CancelledError):
            await listening
    found = watch.latencies(since)
    missing = [p for p in PROTOCOLS if not found.get(p)]
    if missing:
        raise SystemExit(f"no stored readings for {missing}: see {site.work}")
    return found


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> int:
    """Run the repeats; write the result; exit 1 when a median p99 misses its target."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="measured, per repeat")
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--poll", type=float, default=1.0, help="every device's poll, seconds")
    parser.add_argument(
        "--publishing",
        type=float,
        default=None,
        help="OPC UA publishing interval, seconds (default: the site map's default)",
    )
    parser.add_argument(
        "--ua-interval",
        type=float,
        default=None,
        help="OPC UA simulator's sampling (value updates), seconds (default: --poll)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the last scratch directory")
    add_json_argument(parser)
    args = parser.parse_args()
    runs: list[dict[str, list[float]]] = []
    flush = 0.0
    granted: list[float] = []
    for _ in range(args.repeats):
        site = Site(args)
        try:
            site.start()
            flush = site.flush_interval
            runs.append(asyncio.run(_measure(site, args.warmup, args.seconds)))
            if site.granted is None:
                raise SystemExit(f"no opcua_subscription_created in {site.work}/agent.log")
            granted.append(site.granted)
        finally:
            if args.keep:
                print(f"scratch: {site.work}")
            site.stop(keep=args.keep)
    target = flush + MARGIN_S
    figures: list[Figure] = []
    for protocol in PROTOCOLS:
        per_run = [run[protocol] for run in runs]
        for label, share in (("p50", 0.5), ("p99", 0.99)):
            figures.append(
                Figure(
                    goal="G6" if label == "p99" else "",
                    name=f"{protocol} poll->stored {label}",
                    unit="s",
                    values=tuple(_percentile(v, share) for v in per_run),
                    target=target if label == "p99" else None,
                    direction="at_most",
                    baseline=f"flush interval {flush:g} s + 50 ms",
                )
            )
        figures.append(
            Figure(
                goal="",
                name=f"{protocol} poll->stored max",
                unit="s",
                values=tuple(max(v) for v in per_run),
                gated=False,
                note="one stall of the shared machine moves a maximum",
            )
        )
        figures.append(
            Figure(
                goal="",
                name=f"{protocol} readings measured",
                unit="readings",
                values=tuple(float(len(v)) for v in per_run),
            )
        )
    modbus_p99 = [_percentile(run["modbus"], 0.99) for run in runs]
    publishing = max(granted)
    # Not gated: the devices' readings share blocks, so a reading waits the whole flush
    # interval only when it opens a block; Modbus's own p99 moves with the phase of the
    # other devices' polls (0.07-0.23 s in one run), and the difference is no server share.
    for protocol, note in (
        ("opcua-subscribe", "includes a change's wait at the server, up to a publishing interval"),
        (
            "opcua-poll",
            "t is sampled during the agent's Read (simulator --fresh-reads), as Modbus's",
        ),
    ):
        figures.append(
            Figure(
                goal="",
                name=f"{protocol} p99 over modbus p99",
                unit="s",
                values=tuple(
                    _percentile(run[protocol], 0.99) - base
                    for run, base in zip(runs, modbus_p99, strict=True)
                ),
                baseline="Modbus p99 of the same repeat",
                note=note,
            )
        )
    for stage in (*(f"{p} t->sealed" for p in PROTOCOLS), "sealed->published", "published->acked"):
        per_run = [run[stage] for run in runs]
        for label, share in (("p50", 0.5), ("p99", 0.99)):
            figures.append(
                Figure(
                    goal="",
                    name=f"stage {stage} {label}",
                    unit="s",
                    values=tuple(_percentile(v, share) for v in per_run),
                )
            )
    series = {
        f"{protocol} latency percentiles": [
            [q, _percentile(runs[-1][protocol], q / 100)] for q in range(101)
        ]
        for protocol in PROTOCOLS
    }
    asked = "the site map's default" if args.publishing is None else f"{args.publishing:g} s"
    note = (
        f"poll {args.poll:g} s, OPC UA publishing interval asked {asked}, granted "
        f"{publishing:g} s; the simulator samples subscribed nodes every "
        f"{args.ua_interval or args.poll:g} s and read nodes at each Read (MaxAge 0); flush "
        f"interval {flush:g} s; latency = ACK arrival - reading t (an upper bound of poll -> "
        "stored; OPC UA subscribe: sample -> stored, which includes up to one publishing "
        "interval at the server); 2-core machine shared with other work"
    )
    result = BenchResult("latency", tuple(figures), series, (note,))
    write_result(args.json, result)
    print(
        {
            p: f"p50 {statistics.median(_percentile(r[p], 0.5) for r in runs):.3f} "
            f"p99 {statistics.median(_percentile(r[p], 0.99) for r in runs):.3f}"
            for p in PROTOCOLS
        }
    )
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
