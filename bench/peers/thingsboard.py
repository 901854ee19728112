"""Side by side with ThingsBoard IoT Gateway (issue 11.7): same simulator, points and broker.

ThingsBoard IoT Gateway (``thingsboard-gateway`` from PyPI, the Python peer a user would
otherwise pick) and our `edge-agent run` + `collector serve` read the same Modbus TCP simulator
processes (simulators tank farm, two of 100 tanks, seeds 0 and 1: 5 float32 registers a
tank) as 10 devices of 20 tanks each (100 points, registers of their own, as bench/wire.py's
real site), every point every second: 1,000 readings/s. Each publishes to a real
Mosquitto on a free loopback port, fresh for each run. The runs go one after the other,
never at once (2 cores): per repeat the TB gateway, then ours.

The TB gateway runs from its own venv (bench/peers/tb_gateway.py: pinned version, shipped
default config but host/port/token and the Modbus connector, so its default memory storage);
bench/peers/tb_platform.py stands in for ThingsBoard: it answers the gateway's
getSessionLimits RPC (without an answer the gateway never sends telemetry) and counts the
telemetry values it receives, each (device, key, ts). Ours counts what the collector stored.

Phases of one run: start, first delivered reading, --warmup s, --steady s measured, the
broker SIGKILLed for --outage s and started again on the same port, then --recovery s from
the gateway's first delivery after the restart (both reconnect with a backoff: about 20 s
after a 30 s outage; at most RECONNECT_CAP_S).
Figures per run, min/median/max over --repeats (each ratio is ours / TB in the same repeat):

* CPU %: the gateway process's CPU time (all threads, /proc/PID/stat) over the steady wall
  time, in % of one core. For ours the agent's (the collector is the server side, as
  ThingsBoard is for TB);
* RSS MiB: the process's VmHWM at the end of the run (peak, outage included) and the median
  VmRSS over the steady phase (steady);
* readings/s delivered: readings arriving at the server side over the steady phase (TB: distinct
  telemetry values at the stand-in; ours: rows stored by the collector);
* bytes/reading on the wire: TCP bytes of the gateway's connections to the broker acknowledged
  over the steady phase (`ss`: MQTT framing included, TCP/IP headers not; pings, statistics,
  and for ours the PUBACKs of the collector's ACKs included) over the readings delivered then;
* readings lost in the outage: readings due at each point's rate in the steady phase from
  the kill to --settle s after the restart, less those that arrived (with a time stamp in
  that span) by the end of the recovery (bench/peers/probe.py shortfall). "Due" counts a
  poll the gateway skipped or delayed while the uplink was down as well as a reading lost in
  transit: neither reaches the user. Exact for our 1 s grid; good to about a poll per device
  for TB, whose stamps jitter by up to 1.5 s (the same estimate on the steady phase's second
  half, at the rate of its first, is reported as the resolution). For ours also exactly:
  readings in the blocks the outbox sealed up to CUT_S before the end that the collector did
  not store (block by block; TB's own count of what it produced is not visible from outside).

Gated: ours has 0 readings sealed and never stored (outage included). Everything else is
reported (gated=False): this busy 2-core machine makes absolute figures noisy, and no G-number
is a ratio to a peer except G9's "half of TB's bytes", which bench/wire.py gates on its own.

What the report should say (first full run, 2 repeats, load average 10-11 on 2 cores): on
the same 1,000 points at 1 s, TB gateway 3.8.5 used 16.7 % of a core and ours 3.0 % (0.18x);
RSS 70 MiB peak for TB, 80 MiB for ours (1.13x: G7's work, bench/memory.py); both delivered
the ~1,000 readings/s; 23.2 B per reading on the wire for TB's JSON, 9.6 for our compressed
signed blocks (0.41x, under G9's "half of TB"). Broker killed for 30 s: ours stored every
sealed reading (exact, 0 missing); TB's default memory storage held its polls and sent them
after the reconnect, its shortfall (149 and 1,574 readings) being no larger than its
estimate's resolution without an outage (22 and 1,234): no loss shows at 30 s, but its
buffer lives in the gateway's memory (gone on a restart, capped at max_records_count). Both
took 6-23 s after the restart to deliver again (reconnect backoff).

Run: ``.venv/bin/python -m bench.peers.thingsboard [--repeats 2] [--steady 45] [--json PATH]``
(about 2.5 minutes per gateway per repeat at the defaults; the first run also creates
.bench-venvs/tb-gateway, about 15 s). Exit 1 when ours lost a reading (median over repeats).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.peers import probe
from bench.peers.sides import OurSide, Side, TbSide
from bench.peers.tb_gateway import (
    TB_GATEWAY_VERSION,
    TbDevice,
    TbPoint,
    ensure_venv,
)
from bench.peers.tb_platform import SESSION_LIMITS
from bench.peers.tb_report import RunFigures, figures_of, side_by_side_markdown
from bench.procfs import cpu_seconds, growth, memory_kib
from bench.results import BenchResult, add_json_argument, finished
from demo.broker import free_port, wait_for_port

DEVICES, TANKS = 10, 20  # 10 devices x 20 tanks x 5 points = 1,000 points
SIM_TANKS = 100  # tanks per simulator: two simulators, each device its own 20 tanks
_TANK_POINTS = (("LT", "holding", 0), ("TT", "holding", 2), ("PT", "holding", 4),
                ("LEL", "input", 0), ("TOX", "input", 2))  # fmt: skip
MIB = 1024
CUT_S = 5.0  # blocks sealed this long before the end must be stored by then
RECONNECT_CAP_S = 120.0  # the longest wait for a gateway to deliver again after the restart


def site_devices(sim_ports: tuple[int, ...]) -> tuple[TbDevice, ...]:
    """The 1,000 points both gateways read: device i reads tanks 20i+1..20i+20 of the site.

    Distinct registers (as bench/wire.py's real site): devices reading the same registers
    would send the same values, which our compressed blocks would squeeze away and TB's JSON
    would not.
    """
    devices = []
    for i in range(DEVICES):
        first = i * TANKS
        points = tuple(
            TbPoint(
                f"T{first + slot + 1:03d}-{code}-01",
                table,
                10 * (first % SIM_TANKS + slot) + offset,
            )
            for slot in range(TANKS)
            for code, table, offset in _TANK_POINTS
        )
        devices.append(TbDevice(f"plc-{i:02d}", sim_ports[first // SIM_TANKS], points))
    return tuple(devices)


@dataclass(frozen=True)
class Phases:
    warmup: float
    steady: float
    outage: float
    recovery: float
    settle: float


def _wait(side: Side, condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if (name := side.exited()) is not None:
            raise SystemExit(f"{side.name}: {name} exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{side.name}: timed out waiting for {what}")
        time.sleep(0.2)


class Watch:
    """Samples a gateway's RSS and the delivered count once a second, for plots and figures."""

    def __init__(self, side: Side, pid: int, origin: float) -> None:
        self.side, self.pid, self.origin = side, pid, origin
        self.rss_kib: list[int] = []
        self.timeline: list[list[float]] = []
        self._last = (time.time(), side.delivered())

    def run_for(
        self, seconds: float, *, keep_rss: bool = False, until: Callable[[], bool] | None = None
    ) -> None:
        """Sample for `seconds`, or until `until` holds (checked every sample)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0 and not (until and until()):
            time.sleep(min(1.0, left))
            if (name := self.side.exited()) is not None:
                raise SystemExit(f"{self.side.name}: {name} exited")
            rss, _ = memory_kib(self.pid)
            if keep_rss:
                self.rss_kib.append(rss)
            now, count = time.time(), self.side.delivered()
            rate = (count - self._last[1]) / (now - self._last[0])
            self.timeline.append([round(now - self.origin, 2), round(rate, 1)])
            self._last = (now, count)


def measure(side: Side, phases: Phases, devices: tuple[TbDevice, ...], scratch: Path) -> RunFigures:
    """One run of `side` on a fresh broker: steady figures, then the outage and its losses."""
    work = Path(tempfile.mkdtemp(prefix=f"peer-{side.name}-", dir=scratch))
    work.chmod(0o755)  # Mosquitto started as root reads its ACL file as its own user
    broker = side.broker(work)
    broker.start()
    try:
        pid = side.start(work, broker.port, devices)
        _wait(side, lambda: side.delivered() > 0, 120, "the first delivered reading")
        time.sleep(phases.warmup)
        t0 = time.time()
        watch = Watch(side, pid, t0)
        cpu0, wire0, count0 = (
            cpu_seconds(pid),
            probe.uplink_bytes(pid, broker.port),
            side.delivered(),
        )
        watch.run_for(phases.steady, keep_rss=True)
        t1 = time.time()
        cpu1, wire1, count1 = (
            cpu_seconds(pid),
            probe.uplink_bytes(pid, broker.port),
            side.delivered(),
        )
        broker.stop(signal.SIGKILL)
        killed = time.time()
        watch.run_for(phases.outage)
        broker.start()
        restarted = time.time()
        before = side.delivered()
        watch.run_for(RECONNECT_CAP_S, until=lambda: side.delivered() > before)
        reconnected = time.time() - restarted if side.delivered() > before else float("nan")
        watch.run_for(phases.recovery)
        _, peak_kib = memory_kib(pid)
        unstored = side.unstored(time.time() - CUT_S)
        series = side.series()
        window = (killed, restarted + phases.settle)
        lost = probe.shortfall(series, (t0, t1), window)
        middle = (t0 + t1) / 2  # the estimate's resolution: on a half it did not learn from
        baseline = probe.shortfall(series, (t0, middle), (middle, t1))
        if os.environ.get("GZ_PEER_KEEP"):  # for a look at what arrived when
            times = {"steady": [t0, t1], "killed": killed, "restarted": restarted, "series": series}
            (work / "series.json").write_text(json.dumps(times), encoding="ascii")
    finally:
        side.stop()
        broker.stop()
        if not os.environ.get("GZ_PEER_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
    readings = count1 - count0
    return RunFigures(
        cpu_pct=100 * (cpu1 - cpu0) / (t1 - t0),
        rss_peak_mib=peak_kib / MIB,
        rss_steady_mib=statistics.median(watch.rss_kib) / MIB,
        readings_per_s=readings / (t1 - t0),
        bytes_per_reading=growth(wire0, wire1) / max(1, readings),
        lost=lost.missing,
        expected_in_outage_window=lost.expected,
        baseline_shortfall=baseline.missing,
        unstored=unstored,
        reconnected_after_s=reconnected,
        timeline=watch.timeline,
    )


def _print_run(repeat: int, name: str, figures: RunFigures) -> None:
    print(
        f"repeat {repeat + 1} {name}: cpu {figures.cpu_pct:.1f} %, rss peak "
        f"{figures.rss_peak_mib:.1f} steady {figures.rss_steady_mib:.1f} MiB, "
        f"{figures.readings_per_s:.0f} readings/s, {figures.bytes_per_reading:.1f} B/reading, "
        f"lost {figures.lost} of {figures.expected_in_outage_window:.0f} (no outage: "
        f"{figures.baseline_shortfall}), sealed/unstored {figures.unstored}, "
        f"back {figures.reconnected_after_s:.1f} s after the restart",
        file=sys.stderr, flush=True,
    )  # fmt: skip


def main() -> int:
    """Run both gateways --repeats times; write the result; exit 1 when ours lost readings."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring")
    parser.add_argument("--steady", type=float, default=45.0, help="seconds measured")
    parser.add_argument("--outage", type=float, default=30.0, help="seconds the broker is down")
    parser.add_argument(
        "--recovery", type=float, default=30.0, help="seconds after the first delivery again"
    )
    parser.add_argument(
        "--settle", type=float, default=10.0,
        help="seconds after the restart still counted as the outage's (reconnect time)",
    )  # fmt: skip
    parser.add_argument("--only", choices=("tb", "ours"), help="run one side (no ratios)")
    add_json_argument(parser)
    args = parser.parse_args()
    phases = Phases(args.warmup, args.steady, args.outage, args.recovery, args.settle)
    # A SIGTERM (bench.report's timeout) unwinds through the finally blocks that stop the
    # gateways, brokers and simulators this process started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    version = ensure_venv()
    load = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="ganzhi-peers-"))
    scratch.chmod(0o755)
    sim_ports = tuple(free_port() for _ in range(DEVICES * TANKS // SIM_TANKS))
    sims = []
    for seed, port in enumerate(sim_ports):
        argv = ("-m", "simulators", "--port", str(port), "--tanks", str(SIM_TANKS))
        with (scratch / f"sim-{seed}.log").open("ab") as log:
            sims.append(
                subprocess.Popen(
                    [sys.executable, *argv, "--seed", str(seed)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    runs: dict[str, list[RunFigures]] = {"tb": [], "ours": []}
    storage: dict[str, object] = {}
    try:
        for port in sim_ports:
            wait_for_port(port)
        for repeat in range(args.repeats):
            for side in (TbSide(), OurSide()):
                if args.only not in (None, side.name):
                    continue
                figures = measure(side, phases, site_devices(sim_ports), scratch)
                if isinstance(side, TbSide):
                    storage = side.storage
                runs[side.name].append(figures)
                _print_run(repeat, side.name, figures)
    finally:
        for sim in sims:
            sim.terminate()
            sim.wait(timeout=30)
        if os.environ.get("GZ_PEER_KEEP"):
            print(f"kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    if args.only is not None:
        return 0
    notes = (
        (
            f"ThingsBoard IoT Gateway {version} (PyPI thingsboard-gateway=={TB_GATEWAY_VERSION},"
            " pymodbus 3.9.2) in its own venv, shipped tb_gateway.json and logs.json but host,"
            " port, token and one Modbus connector (10 slaves x 100 32float time series,"
            " pollPeriod 1000 ms, the shipped modbus.json's other settings); storage as shipped:"
            f" {storage}"
        ),
        (
            f"stand-in platform's getSessionLimits answer: {SESSION_LIMITS}; the broker's ACL"
            " keeps the gateway from reading its own publications back (ThingsBoard does not"
            " echo them; Mosquitto did, into its remote configurator); TB started without its"
            " update check"
        ),
        (
            "TB on broker loss, shipped memory storage: polled data waits in an in-process queue"
            " of max_records_count events (one or two per device poll here: hours of this site)"
            " and is sent after the reconnect; when full, new data is dropped ('Memory storage"
            " is full!'); a gateway restart loses all of it. Ours: the outbox on disk"
        ),
        (
            "ours: edge-agent run (tankfarm demo map, 10 modbus_tcp devices x 100 float32"
            " points, poll 1s, uplink encoding as configured by default) + collector serve on"
            " SQLite; both read two 100-tank simulators, each device tanks of its own"
        ),
        (
            f"phases: warmup {args.warmup:g} s, steady {args.steady:g} s, broker SIGKILLed"
            f" {args.outage:g} s, recovery {args.recovery:g} s; loss counted from the kill to"
            f" {args.settle:g} s after the restart"
        ),
        (
            f"load average at the start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on"
            f" {os.cpu_count()} cores (shared machine: absolute figures are noisy)"
        ),
    )
    series = {
        f"{name} readings/s delivered (last repeat)": runs[name][-1].timeline
        for name in ("tb", "ours")
    }
    result = BenchResult(
        bench="peers.thingsboard",
        figures=figures_of(runs["tb"], runs["ours"]),
        series=series,
        notes=notes,
    )
    return finished(args.json, result)


__all__ = ["main", "side_by_side_markdown"]  # the report's hook lives in tb_report

if __name__ == "__main__":
    sys.exit(main())
