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
line's `run` (its floor before reading a map), and of the same without the dev-only packages this
venv has and a `pip install ganzhi` does not (DEV_ONLY: structlog imports them when present).

Targets (G7, docs/performance.md): median peak <= 60 MiB Modbus only and <= 80 MiB with
OPC UA at 1,000 tags; growth from 10 to 1,000 tags <= 5 MiB per 1,000 tags.

Soak (``--soak SECONDS``): one case (``--soak-case``, default modbus-1000) runs that long,
sampled every ``--soak-every`` seconds; growth is the mean of the last tenth of the samples
over the mean of the tenth after the first (the first tenth is warm-up: SQLite's page cache,
the collector catching up). Target <= 2 %. ``--soak 1800`` is the 30-minute G7 soak; it is never
part of `make bench`.

Result (bench/results.py, `--json PATH`): min/median/max over `--repeats` of each case's peak
and steady RSS, the growth per 1,000 tags of each repeat, the baselines; the RSS samples of
each case's last repeat (and of the soak) as `rss_over_time:` series for the report's plot.

Run: `.venv/bin/python -m bench.memory [--repeats 3] [--seconds 20] [--cases modbus-10,...]`
(about 3 x 3 x (20 s + ~8 s start and stop) = 4-5 min at the defaults), or
`.venv/bin/python -m bench.memory --soak 1800 [--samples-out rss.csv]` (`make bench-soak`);
`--installed` runs the agent without the DEV_ONLY packages, as a production install has it.
Exits non-zero when a median (or the soak's growth) misses its target.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procfs import memory_kib
from bench.results import (
    RSS_OVER_TIME,
    BenchResult,
    Figure,
    add_json_argument,
    finished,
    series_name,
)
from bench.rig import (
    BIN,
    TANK_POINTS,
    Scratch,
    init_keys,
    modbus_tcp_device,
    tank_points,
    tankfarm_configs,
)
from demo.broker import free_port, wait_for_port

MIB = 1024 * 1024
TARGET_MODBUS_MIB = 60.0
TARGET_OPCUA_MIB = 80.0
TARGET_GROWTH_PER_1000_TAGS_MIB = 5.0
TARGET_SOAK_GROWTH = 0.02
# Installed here by the dev extra (schemathesis, playwright), not by `pip install ganzhi`, yet
# structlog imports them when present: the agent's figures in this venv include them.
DEV_ONLY = ("rich", "greenlet")
OPC_STATIONS = 10  # the slope simulator's GNSS stations: X, Y and Z nodes each


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
        return self.devices * self.tanks_per_device * len(TANK_POINTS)


CASES = {
    case.name: case
    for case in (
        Case("modbus-10", 1, 2, opcua=False),
        Case("modbus-1000", 10, 20, opcua=False),
        Case("opcua-1000", 10, 20, opcua=True),
    )
}


def _modbus_device(index: int, tanks: int, port: int) -> dict[str, Any]:
    points = [p for tank in range(1, tanks + 1) for p in tank_points(index * tanks + tank, tank)]
    return modbus_tcp_device(f"plc-{index:02d}", port, points, poll="1s")


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
        self.scratch = Scratch.new("ganzhi-memory-")
        self.work, self.broker = self.scratch.work, self.scratch.broker
        self.agent: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Configure, start everything, and wait for the agent's first sealed block."""
        self.broker.start()
        sim_port, api_port, ua_port = free_port(), free_port(), free_port()
        tanks = self.case.tanks_per_device
        with tankfarm_configs(self.work, self.broker.url, sim_port, api_port) as site:
            site["devices"] = [_modbus_device(i, tanks, sim_port) for i in range(self.case.devices)]
            if self.case.opcua:
                site["devices"].append(_opcua_device(ua_port))
        init_keys(self.work)
        self.scratch.spawn(
            "sim", str(BIN / "python"), "-m", "simulators", "--port", str(sim_port),
            "--tanks", str(tanks),
        )  # fmt: skip
        wait_for_port(sim_port)
        if self.case.opcua:
            self.scratch.spawn(
                "slope", str(BIN / "python"), "-m", "simulators.slope_opcua",
                "--port", str(ua_port), "--stations", str(OPC_STATIONS), "--interval", "0.5",
            )  # fmt: skip
            wait_for_port(ua_port, timeout=30)
        self.scratch.spawn("collector", str(BIN / "collector"), "serve", "-c", "collector.yaml")
        wait_for_port(api_port, timeout=90)  # a busy 2-core box starts it slowly
        if self.absent:
            # `run` execs the runner in the same process: the packages are kept out of both
            # interpreters by stand-ins first on PYTHONPATH (which the exec keeps) whose
            # import raises ImportError, as a missing package's does.
            stubs = self.work / "not-installed"
            for name in self.absent:
                (stubs / name).mkdir(parents=True, exist_ok=True)
                (stubs / name / "__init__.py").write_text(
                    f"raise ImportError('{name} is not installed')\n", encoding="utf-8"
                )
            code = (
                "import os, sys\n"
                f"os.environ['PYTHONPATH'] = os.pathsep.join(filter(None, [{str(stubs)!r}, "
                "os.environ.get('PYTHONPATH')]))\n"
                f"sys.path.insert(0, {str(stubs)!r})\n"
                "from edge_agent.cli import main; main(['run', '-c', 'site.yaml'])"
            )
            self.agent = self.scratch.spawn("agent", str(BIN / "python"), "-c", code)
        else:
            self.agent = self.scratch.spawn(
                "agent", str(BIN / "edge-agent"), "run", "-c", "site.yaml"
            )
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
            yield elapsed, memory_kib(self.agent.pid)[0]
            time.sleep(every)

    def peak_kib(self) -> int:
        """The agent's VmHWM so far."""
        assert self.agent is not None
        return memory_kib(self.agent.pid)[1]

    def stop(self) -> None:
        """Stop every process (the agent first), then the broker; remove the scratch dir."""
        self.scratch.stop(30)


@dataclass(frozen=True)
class Measured:
    """One run of a case: peak and steady RSS (MiB), sealing rate, the samples (s, MiB)."""

    peak_mib: float
    steady_mib: float
    readings_per_s: float
    samples: tuple[tuple[float, float], ...]
    check_peak_mib: float


def check_peak_mib(work: Path, absent: tuple[str, ...] = ()) -> float:
    """Peak RSS (MiB) of `edge-agent run`'s first phase on the site map in `work`.

    `run` reads and checks the map (YAML, pydantic), compiles the plan and encodes it, then
    execs the runner, whose VmHWM starts afresh: the runner's peak, the G7 figure, does not
    include this phase. It is measured here in a process of its own doing the same steps
    (edge_agent/cli/run.py's `run` up to the exec).
    """
    code = (
        "import sys, pathlib\n"
        f"sys.modules.update(dict.fromkeys({absent!r}))\n"  # None: import raises ImportError
        "from edge_agent.shell.host import keep_large_allocations_mapped\n"
        "keep_large_allocations_mapped()\n"
        "from edge_agent.cli.options import load_or_exit\n"
        "from edge_agent.cli.run import plan_memfd\n"
        "from edge_agent.core.plan_compile import compile_plan\n"
        "from specs.catalogue import default_catalogue\n"
        "site = pathlib.Path('site.yaml')\n"
        "config = load_or_exit(site)\n"
        "plan = compile_plan(config, default_catalogue(), site_file=site,"
        " site_text=site.read_text(encoding='utf-8'))\n"
        "del config\n"  # as run does
        "plan_memfd(plan)\n"
        "print(next(l for l in pathlib.Path('/proc/self/status').read_text().splitlines()"
        " if l.startswith('VmHWM')).split()[1])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=work, capture_output=True, text=True, check=True
    )
    return int(done.stdout) / 1024


def measure(case: Case, seconds: float, absent: tuple[str, ...] = ()) -> Measured:
    """Peak RSS (MiB) of the agent of `case` over `seconds` of steady polling."""
    run = SiteRun(case, absent=absent)
    try:
        run.start()
        before = run.sealed_readings()
        samples = tuple((t, kib / 1024) for t, kib in run.samples(seconds, 0.5))
        readings = run.sealed_readings() - before
        return Measured(
            peak_mib=run.peak_kib() / 1024,
            steady_mib=statistics.median(mib for _, mib in samples),
            readings_per_s=readings / seconds,
            samples=samples,
            check_peak_mib=check_peak_mib(run.work, absent),
        )
    finally:
        run.stop()


def baselines() -> tuple[Figure, ...]:
    """The import floors of this run: an asyncio interpreter, the agent's CLI with and without
    the dev-only packages."""
    return (
        Figure("", "interpreter that imported asyncio (baseline)", "MiB",
               (round(imported_mib("asyncio"), 1),)),
        Figure("", "agent's imports (edge_agent.cli.run), this venv", "MiB",
               (round(imported_mib("edge_agent.cli.run"), 1),)),
        Figure("", "agent's imports without the dev-only packages", "MiB",
               (round(imported_mib("edge_agent.cli.run", absent=DEV_ONLY), 1),),
               note=f"{', '.join(DEV_ONLY)}: structlog imports them when present"),
    )  # fmt: skip


def case_figures(peaks: dict[str, list[Measured]]) -> list[Figure]:
    """Peak (gated at 1,000 tags) and steady RSS per case, growth per 1,000 tags per repeat."""
    figures = []
    for name, runs in peaks.items():
        case = CASES[name]
        target = TARGET_OPCUA_MIB if case.opcua else TARGET_MODBUS_MIB
        gated = case.modbus_tags >= 1000
        figures += [
            Figure("G7" if gated else "", f"peak RSS, {name}", "MiB",
                   tuple(round(r.peak_mib, 1) for r in runs),
                   target=target if gated else None, direction="at_most"),
            Figure("", f"steady RSS (median sample), {name}", "MiB",
                   tuple(round(r.steady_mib, 1) for r in runs)),
            Figure("", f"readings sealed per second, {name}", "readings/s",
                   tuple(round(r.readings_per_s) for r in runs)),
            Figure("", f"start-up peak RSS, map checked before the runner, {name}", "MiB",
                   tuple(round(r.check_peak_mib, 1) for r in runs),
                   note="edge-agent run's first phase (YAML, pydantic, plan), about a second"
                   " long; its memory goes back at the exec into the runner"),
        ]  # fmt: skip
    if {"modbus-10", "modbus-1000"} <= peaks.keys():
        small, big = CASES["modbus-10"], CASES["modbus-1000"]
        per_tag = 1000 / (big.modbus_tags - small.modbus_tags)
        growth = tuple(
            round((b.peak_mib - a.peak_mib) * per_tag, 2)
            for a, b in zip(peaks[small.name], peaks[big.name], strict=True)
        )
        figures.append(
            Figure("G7", "peak RSS growth per 1,000 tags (10 -> 1,000 Modbus tags)", "MiB",
                   growth, target=TARGET_GROWTH_PER_1000_TAGS_MIB, direction="at_most",
                   baseline="peak RSS at 10 tags, same repeat")
        )  # fmt: skip
    return figures


def main() -> int:
    """Measure, write the result, and fail when a median misses its target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", "--repeat", type=int, default=3, help="runs per case")
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
    add_json_argument(parser)
    args = parser.parse_args()
    absent = DEV_ONLY if args.installed else ()
    if args.soak > 0:
        from bench.memory_soak import soak, soak_result  # it builds on this module

        soaked = soak(CASES[args.soak_case], args.soak, args.soak_every, args.samples_out, absent)
        result = soak_result(soaked, args.installed)
    else:
        runs: dict[str, list[Measured]] = {}
        for _ in range(args.repeats):  # interleaved: every case sees the same machine load
            for name in args.cases.split(","):
                runs.setdefault(name, []).append(measure(CASES[name], args.seconds, absent))
        series = {
            series_name(RSS_OVER_TIME, f"{name}, {args.seconds:g} s run"): [
                [round(t, 1), round(mib, 2)] for t, mib in measured[-1].samples
            ]
            for name, measured in runs.items()
        }
        result = BenchResult(
            "memory",
            (*case_figures(runs), *baselines()),
            series=series,
            notes=(f"Agent without the dev-only packages {DEV_ONLY}: {args.installed}",),
        )  # fmt: skip
    return finished(args.json, result)


if __name__ == "__main__":
    sys.exit(main())
