"""G7 agent memory: the real `edge-agent run`'s resident set at 10 and 1,000 Modbus tags, with
OPC UA, and over a soak.

Each case is a whole site on loopback: Mosquitto, the tank-farm Modbus simulator, a
`collector serve` that ACKs (so the outbox drains as in the field), and `edge-agent run` on a
generated site map polling every point each second:

* ``modbus-10``: one Modbus TCP device, 10 points;
* ``modbus-1000``: ten Modbus TCP devices of 100 points each (1,000 tags);
* ``opcua-1000``: the same 1,000 Modbus tags plus an OPC UA device (the slope simulator,
  ``--stations 10``: 30 GNSS nodes, subscribed).

The agent's VmRSS is sampled from /proc every half second once it has sealed its first block;
a case's figure is its VmHWM (peak) at the end (the steady figure, the median sample, is shown
too). Baselines in the same run: the resident set of an interpreter that imported asyncio
(what any asyncio agent pays before its own code), of one that imported the agent's command
line (its floor before reading a map), and of the same without the dev-only packages this
venv has and a `pip install ganzhi` does not (DEV_ONLY: structlog imports them when present).

Targets (G7, docs/performance.md): median peak <= 60 MiB Modbus only and <= 80 MiB with
OPC UA at 1,000 tags; growth from 10 to 1,000 tags <= 5 MiB per 1,000 tags.

Soak (``--soak SECONDS``): one case (``--soak-case``, default modbus-1000) runs that long,
sampled every ``--soak-every`` seconds; growth is the mean of the last tenth of the samples
over the mean of the tenth after the first (the first tenth is warm-up: SQLite's page cache,
the collector catching up). Target <= 2 %. ``--soak 1800`` is the 30-minute G7 soak; it is never
part of `make bench`.

Run: `.venv/bin/python -m bench.memory [--repeat 3] [--seconds 20] [--cases modbus-10,...]`
or `.venv/bin/python -m bench.memory --soak 1800 [--samples-out rss.csv]`; `--installed` runs
the agent without the DEV_ONLY packages, as a production install has it. Exits non-zero when
a median (or the soak's growth) misses its target; prints one JSON line of figures at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from demo.__main__ import write_configs
from demo.broker import Broker, free_port, wait_for_port

BIN = Path(sys.executable).parent
MIB = 1024 * 1024
TARGET_MODBUS_MIB = 60.0
TARGET_OPCUA_MIB = 80.0
TARGET_GROWTH_PER_1000_TAGS_MIB = 5.0
TARGET_SOAK_GROWTH = 0.02
# Installed here by the dev extra (schemathesis, playwright), not by `pip install ganzhi`, yet
# structlog imports them when present: the agent's figures in this venv include them.
DEV_ONLY = ("rich", "greenlet")
OPC_STATIONS = 10  # the slope simulator's GNSS stations: X, Y and Z nodes each

# Per simulated tank: (code, quota, table, start offset); tank n's registers start at 10*(n-1).
_TANK_POINTS = (
    ("LT", "WHP-LT", "holding", 0),
    ("TT", "WHP-TT", "holding", 2),
    ("PT", "WHP-PT", "holding", 4),
    ("LEL", "WHP-LEL", "input", 0),
    ("TOX", "WHP-TOX", "input", 2),
)


@dataclass(frozen=True)
class Case:
    """One site shape: Modbus devices x tanks each (5 points a tank), with or without OPC UA."""

    name: str
    devices: int
    tanks_per_device: int
    opcua: bool

    @property
    def modbus_tags(self) -> int:
        """Modbus points in the site map."""
        return self.devices * self.tanks_per_device * len(_TANK_POINTS)


CASES = {
    case.name: case
    for case in (
        Case("modbus-10", 1, 2, opcua=False),
        Case("modbus-1000", 10, 20, opcua=False),
        Case("opcua-1000", 10, 20, opcua=True),
    )
}


def _modbus_device(index: int, tanks: int, port: int) -> dict[str, Any]:
    points = [
        {
            "point": f"T{index * tanks + tank:03d}-{code}-01",
            "quota": quota,
            "address": {"table": table, "start": 10 * (tank - 1) + offset, "type": "float32"},
        }
        for tank in range(1, tanks + 1)
        for code, quota, table, offset in _TANK_POINTS
    ]
    return {
        "id": f"plc-{index:02d}",
        "driver": "modbus_tcp",
        "host": "127.0.0.1",
        "port": port,
        "unit_id": 1,
        "poll": "1s",
        "timeout": "1s",
        "points": points,
    }


def _opcua_device(port: int) -> dict[str, Any]:
    nodes = [
        (f"S{n:02d}-{axis}-01", f"BP-{axis}", f"ns=2;s=Slope.G{n}.{axis[1]}")
        for n in range(1, OPC_STATIONS + 1)
        for axis in ("GX", "GY", "GZ")
    ]
    return {
        "id": "slope",
        "driver": "opcua",
        "endpoint": f"opc.tcp://127.0.0.1:{port}",
        "poll": "1s",
        "points": [{"point": p, "quota": q, "node": n} for p, q, n in nodes],
    }


def _cli(work: Path, *argv: str) -> None:
    subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=work, check=True, capture_output=True)


def status_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        key, _, value = line.partition(":")
        if key in {"VmRSS", "VmHWM"}:
            fields[key] = int(value.split()[0])
    return fields


def imported_mib(module: str, *, absent: tuple[str, ...] = ()) -> float:
    """Resident set of an interpreter that imported `module`, with `absent` not installed."""
    code = (
        "import sys, pathlib\n"
        f"sys.modules.update(dict.fromkeys({absent!r}))\n"  # None: import raises ImportError
        f"import {module}\n"
        "print(next(l for l in pathlib.Path('/proc/self/status').read_text().splitlines()"
        " if l.startswith('VmRSS')).split()[1])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout) / 1024


class SiteRun:
    """Broker, simulators, collector and agent of one case, in a scratch directory."""

    def __init__(self, case: Case, *, absent: tuple[str, ...] = ()) -> None:
        self.case = case
        self.absent = absent  # packages the agent runs as if they were not installed
        self.work = Path(tempfile.mkdtemp(prefix="ganzhi-memory-"))
        self.broker = Broker(port=free_port(), workdir=self.work)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.agent: subprocess.Popen[bytes] | None = None

    def _spawn(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        with (self.work / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(argv, cwd=self.work, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def start(self) -> None:
        """Configure, start everything, and wait for the agent's first sealed block."""
        self.broker.start()
        sim_port, api_port, ua_port = free_port(), free_port(), free_port()
        write_configs(self.work, "tankfarm", self.broker.url, sim_port, api_port)
        site_path = self.work / "site.yaml"
        site = yaml.safe_load(site_path.read_text(encoding="utf-8"))
        tanks = self.case.tanks_per_device
        site["devices"] = [_modbus_device(i, tanks, sim_port) for i in range(self.case.devices)]
        if self.case.opcua:
            site["devices"].append(_opcua_device(ua_port))
        site_path.write_text(yaml.safe_dump(site, allow_unicode=True), encoding="utf-8")
        _cli(self.work, "collector", "keys", "init", "-c", "collector.yaml")
        _cli(self.work, "edge-agent", "keys", "init", "-c", "site.yaml")
        _cli(
            self.work, "collector", "gateways", "add", "-c", "collector.yaml",
            "--gateway", site["site"]["gateway"], "--district", site["site"]["district"],
            "--public-key", "keys/gateway.key.pub",
        )  # fmt: skip
        self._spawn(
            "sim", str(BIN / "python"), "-m", "drivers.sim", "--port", str(sim_port),
            "--tanks", str(tanks),
        )  # fmt: skip
        wait_for_port(sim_port)
        if self.case.opcua:
            self._spawn(
                "slope", str(BIN / "python"), "-m", "drivers.sim.slope_opcua",
                "--port", str(ua_port), "--stations", str(OPC_STATIONS), "--interval", "0.5",
            )  # fmt: skip
            wait_for_port(ua_port, timeout=30)
        self._spawn("collector", str(BIN / "collector"), "serve", "-c", "collector.yaml")
        wait_for_port(api_port, timeout=30)
        if self.absent:
            code = (
                f"import sys; sys.modules.update(dict.fromkeys({self.absent!r}))\n"
                "from edge_agent.cli import main; main(['run', '-c', 'site.yaml'])"
            )
            self.agent = self._spawn("agent", str(BIN / "python"), "-c", code)
        else:
            self.agent = self._spawn("agent", str(BIN / "edge-agent"), "run", "-c", "site.yaml")
        self._wait(lambda: self.sealed_readings() > 0, 60, "the agent's first sealed block")

    def _wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.agent is not None and self.agent.poll() is not None:
                raise SystemExit(f"the agent exited: see {self.work / 'agent.log'}")
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}: see {self.work}")
            time.sleep(0.2)

    def sealed_readings(self) -> int:
        """Records the agent has sealed into its outbox so far."""
        outbox = self.work / "state" / "outbox.db"
        if not outbox.exists():
            return 0
        with (
            contextlib.suppress(sqlite3.OperationalError),  # not created yet, or busy
            closing(sqlite3.connect(f"file:{outbox}?mode=ro", uri=True, timeout=5)) as db,
        ):
            return int(db.execute("SELECT coalesce(sum(records), 0) FROM blocks").fetchone()[0])
        return 0

    def samples(self, seconds: float, every: float) -> Iterator[tuple[float, int]]:
        """(seconds since the start, VmRSS KiB) every `every` seconds for `seconds`."""
        assert self.agent is not None
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            if self.agent.poll() is not None:
                raise SystemExit(f"the agent exited: see {self.work / 'agent.log'}")
            yield elapsed, status_kib(self.agent.pid)["VmRSS"]
            time.sleep(every)

    def peak_kib(self) -> int:
        """The agent's VmHWM so far."""
        assert self.agent is not None
        return status_kib(self.agent.pid)["VmHWM"]

    def stop(self) -> None:
        """Stop every process (the agent first), then the broker; remove the scratch dir."""
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.broker.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def measure(case: Case, seconds: float, absent: tuple[str, ...] = ()) -> dict[str, float]:
    """Peak RSS (MiB) of the agent of `case` over `seconds` of steady polling."""
    run = SiteRun(case, absent=absent)
    try:
        run.start()
        before = run.sealed_readings()
        rss = [kib for _, kib in run.samples(seconds, 0.5)]
        readings = run.sealed_readings() - before
        return {
            "peak_mib": run.peak_kib() / 1024,
            "steady_mib": statistics.median(rss) / 1024,
            "readings_per_s": readings / seconds,
        }
    finally:
        run.stop()


def soak(
    case: Case, seconds: float, every: float, samples_out: Path | None, absent: tuple[str, ...]
) -> dict[str, Any]:
    """Run `case` for `seconds`; RSS growth from after warm-up to the end."""
    run = SiteRun(case, absent=absent)
    try:
        run.start()
        rows = []
        for elapsed, rss in run.samples(seconds, every):
            rows.append((elapsed, rss))
            print(f"{elapsed:8.1f}s  {rss / 1024:6.1f} MiB", file=sys.stderr, flush=True)
        peak = run.peak_kib()
    finally:
        run.stop()
    if samples_out is not None:
        samples_out.write_text(
            "seconds,rss_kib\n" + "".join(f"{t:.1f},{r}\n" for t, r in rows), encoding="ascii"
        )
    tenth = max(1, len(rows) // 10)
    settled = statistics.fmean(r for _, r in rows[tenth : 2 * tenth])
    end = statistics.fmean(r for _, r in rows[-tenth:])
    return {
        "soak_case": case.name,
        "soak_seconds": round(seconds),
        "soak_samples": len(rows),
        "soak_settled_mib": round(settled / 1024, 1),
        "soak_end_mib": round(end / 1024, 1),
        "soak_peak_mib": round(peak / 1024, 1),
        "soak_growth": round(end / settled - 1, 4),
    }


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 1),
        "median": round(statistics.median(values), 1),
        "max": round(max(values), 1),
    }


def main() -> int:
    """Measure, print one JSON line, and fail when a median misses its target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per case")
    parser.add_argument("--seconds", type=float, default=20.0, help="steady polling per run")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--soak", type=float, default=0.0, help="soak seconds (1800 for G7)")
    parser.add_argument("--soak-case", choices=sorted(CASES), default="modbus-1000")
    parser.add_argument("--soak-every", type=float, default=10.0, help="soak sampling period")
    parser.add_argument("--samples-out", type=Path, help="soak samples as CSV")
    parser.add_argument(
        "--installed",
        action="store_true",
        help="run the agent as a `pip install ganzhi` would: without the dev-only packages",
    )
    args = parser.parse_args()
    absent = DEV_ONLY if args.installed else ()
    figures: dict[str, Any] = {
        "baseline_asyncio_interpreter_mib": round(imported_mib("asyncio"), 1),
        "agent_imports_mib": round(imported_mib("edge_agent.cli"), 1),
        "agent_imports_without_dev_packages_mib": round(
            imported_mib("edge_agent.cli", absent=DEV_ONLY), 1
        ),
        "agent_without_dev_packages": args.installed,
    }
    if args.soak > 0:
        figures |= soak(CASES[args.soak_case], args.soak, args.soak_every, args.samples_out, absent)
        print(json.dumps(figures))
        return 0 if figures["soak_growth"] <= TARGET_SOAK_GROWTH else 1
    peaks: dict[str, list[float]] = {}
    steady: dict[str, list[float]] = {}
    for _ in range(args.repeat):
        for name in args.cases.split(","):
            result = measure(CASES[name], args.seconds, absent)
            peaks.setdefault(name, []).append(result["peak_mib"])
            steady.setdefault(name, []).append(result["steady_mib"])
            figures[f"{name}_readings_per_s"] = round(result["readings_per_s"])
    ok = True
    for name, values in peaks.items():
        figures[f"{name}_peak_mib"] = _spread(values)
        figures[f"{name}_steady_mib"] = _spread(steady[name])
        target = TARGET_OPCUA_MIB if CASES[name].opcua else TARGET_MODBUS_MIB
        ok &= statistics.median(values) <= target or CASES[name].modbus_tags < 1000
    if {"modbus-10", "modbus-1000"} <= peaks.keys():
        small, big = CASES["modbus-10"], CASES["modbus-1000"]
        growth = (
            (statistics.median(peaks[big.name]) - statistics.median(peaks[small.name]))
            / (big.modbus_tags - small.modbus_tags)
            * 1000
        )
        figures["growth_mib_per_1000_tags"] = round(growth, 2)
        ok &= growth <= TARGET_GROWTH_PER_1000_TAGS_MIB
    print(json.dumps(figures))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
