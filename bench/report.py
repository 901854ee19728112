"""`make bench`: run every bench, keep their results, write docs/performance.md and its plots.

Each bench module runs as `python -m bench.X --json <results>/X.json [options]` in a process
group of its own, bounded by a timeout; its result (bench/results.py) and a record of the run
(command, seconds, exit code, the tail of its output when it gave no result) are kept in
docs/perf/results/, its whole output in build/bench/X.log. The page is then rendered from
that directory alone (bench/report_render.py, a pure function), so `--render-only` rebuilds it
and `make bench-soak` adds the 30-minute soak to the last suite's results.

A bench module that is not in the tree yet is shown as such. Options a bench does not take
(asked through its `--help`) are not passed, so a bench that has no `--repeats` yet still runs.
Hooks read when present: `bench.capacity` (the scale table:
`markdown_table(per_core_from_result(<bench.load's result>))`) and
`bench.peers.thingsboard.side_by_side_markdown(result)` (else its figures as a table).

Exit 1 when a gated figure's median misses its target or a bench ends without a result,
after the page is written. Run: `.venv/bin/python -m bench.report [--quick] [--only a,b]
[--skip a,b] [--soak [SECONDS]] [--render-only]`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.report_plots import draw_all
from bench.report_render import BenchRun, Machine, Report, exit_code, render
from bench.results import BenchResult, read_result

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RESULTS = DOCS / "perf" / "results"
LOGS = ROOT / "build" / "bench"
PACKAGES = ("pymodbus", "asyncua", "paho-mqtt", "aiosqlite", "cryptography", "asyncpg",
            "msgspec", "orjson", "zstandard")  # fmt: skip


@dataclass(frozen=True)
class Job:
    """One bench of the suite: its options at full size and in quick mode, and its bound."""

    name: str
    module: str
    full: tuple[str, ...] = ()
    quick: tuple[str, ...] = ("--repeats", "1")
    timeout: float = 600.0
    default: bool = True  # False: run only when asked for by name (the soak)
    how_to_run: str = ""


JOBS = (
    Job("throughput", "bench.throughput", quick=("--repeats", "1", "--readings", "50000"),
        timeout=300),
    Job("acquisition", "bench.acquisition", timeout=480),
    Job("points", "bench.points", full=("--devices", "1,2,4"),
        quick=("--repeats", "1", "--devices", "1,4"), timeout=480),
    Job("rtu", "bench.rtu", quick=("--repeats", "2"), timeout=120),
    Job("collector", "bench.collector",
        quick=("--repeats", "1", "--gateways", "5", "--blocks", "10"), timeout=600),
    # Full size (3.6 M backlog) but two repeats: three take ~10 min of the suite's ~30.
    Job("replay", "bench.replay", full=("--repeats", "2"),
        quick=("--repeats", "1", "--backlog", "200000", "--normal-seconds", "5"), timeout=900),
    Job("latency", "bench.latency", quick=("--repeats", "1", "--seconds", "8", "--warmup", "4"),
        timeout=480),
    # G7 is the product's memory: the agent as `pip install ganzhi` has it, without the dev-only
    # packages structlog would load when present (rich, greenlet: about 5 MiB).
    Job("memory", "bench.memory", full=("--seconds", "15", "--installed"),
        quick=("--repeats", "1", "--seconds", "8", "--installed"), timeout=600),
    Job("wire", "bench.wire", timeout=300),
    Job("backfill", "bench.backfill", full=("--repeats", "2"),
        quick=("--repeats", "1", "--rows", "200000", "--small", "20000"), timeout=600),
    # A full outbox of 256 MiB (a quarter hour of the suite would fill the default 2 GiB).
    Job("declarations", "bench.declarations", quick=("--repeats", "1", "--budget", "64"),
        timeout=900),
    # 8 MiB given way at once from 160 MiB up (filling takes about 20 s).
    Job("room_making", "bench.room_making", quick=("--repeats", "1", "--budget", "64"),
        timeout=600),
    Job("queries", "bench.queries", quick=("--repeats", "3", "--days", "3"), timeout=300),
    Job("future_move", "bench.future_move", quick=("--repeats", "2", "--junk", "200000"),
        timeout=300),
    Job("signing", "bench.signing",
        quick=("--repeats", "1", "--gateways", "4", "--blocks", "5", "--seconds", "0.5"),
        timeout=300),
    Job("load", "bench.load", quick=("--repeats", "1", "--window", "6", "--warmup", "4",
        "--backends", "postgresql", "--phases", "blocks"), timeout=900),
    # One repeat of each side (~4 min); `python -m bench.peers.thingsboard` alone does two.
    Job("thingsboard", "bench.peers.thingsboard", full=("--repeats", "1"),
        quick=("--repeats", "1", "--warmup", "5", "--steady", "15", "--outage", "10",
               "--recovery", "15"), timeout=1200),
    Job("memory-soak", "bench.memory", full=("--soak", "1800", "--installed"),
        quick=("--soak", "120", "--installed"),
        timeout=2400, default=False, how_to_run="`make bench-soak` (30 minutes)"),
)  # fmt: skip


def present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its package (bench.peers) is not there either
        return False


def keep_options(options: tuple[str, ...], help_text: str) -> tuple[str, ...]:
    """`options` (flag [value] ...) without the flags (and their values) `help_text` lacks."""
    words = set(help_text.replace(",", " ").replace("[", " ").replace("]", " ").split())
    kept: list[str] = []
    skipping = False
    for option in options:
        if option.startswith("--"):
            skipping = option not in words
        if not skipping:
            kept.append(option)
    return tuple(kept)


def accepted(module: str, options: tuple[str, ...]) -> tuple[str, ...]:
    """`options` without those `python -m module --help` does not list."""
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    return keep_options(options, done.stdout)


def run_job(job: Job, options: tuple[str, ...]) -> BenchRun:
    """Run one bench to completion or its timeout; keep its result and record."""
    LOGS.mkdir(parents=True, exist_ok=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    target = RESULTS / f"{job.name}.json"
    target.unlink(missing_ok=True)  # no stale result can stand in for this run's
    argv = accepted(job.module, options)
    log_path = LOGS / f"{job.name}.log"
    print(f"bench.report: {job.module} {' '.join(argv)} (log: {log_path})", flush=True)
    load = os.getloadavg()[0]
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", job.module, *argv, "--json", str(target)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            returncode = process.wait(timeout=job.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)  # the bench's own group: its children too
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            returncode = -1
    seconds = time.monotonic() - started
    output = log_path.read_text(encoding="utf-8", errors="replace")
    result = read_result(target) if target.exists() and returncode in (0, 1) else None
    error = "" if result is not None else output[-4000:]
    if returncode == -1:
        error = f"timed out after {job.timeout:.0f} s\n" + error
    run = BenchRun(
        job.name, job.module, argv, round(seconds, 1), returncode, result, error,
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load_start=round(load, 2),
    )  # fmt: skip
    save_record(RESULTS, run)
    summary = [line for line in output.splitlines() if line.endswith(("[met]", "[MISSED]", "[-]"))]
    print("\n".join(summary[-20:]) or output[-1500:], flush=True)
    print(f"bench.report: {job.name} {run.status} in {seconds:.0f} s", flush=True)
    return run


RECORDED = (
    "name", "module", "argv", "seconds", "returncode", "error", "finished", "load_start",
)  # fmt: skip


def save_record(directory: Path, run: BenchRun) -> None:
    """How `run` went (its result is in its own file)."""
    record = {key: getattr(run, key) for key in RECORDED}
    (directory / f"{run.name}.run.json").write_text(json.dumps(record, indent=1) + "\n")


def load_run(job: Job, directory: Path = RESULTS) -> BenchRun:
    """The last recorded run of `job` from `directory`."""
    if not present(job.module):
        return BenchRun(job.name, job.module, present=False)
    record = directory / f"{job.name}.run.json"
    if not record.exists():
        return BenchRun(job.name, job.module, how_to_run=job.how_to_run)
    raw = json.loads(record.read_text())
    fields = {key: raw[key] for key in RECORDED if key in raw} | {"argv": tuple(raw["argv"])}
    result_path = directory / f"{job.name}.json"
    result = read_result(result_path) if result_path.exists() else None
    return BenchRun(**fields, result=result, how_to_run=job.how_to_run)


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "not installed"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


async def _postgres_version() -> str:
    import asyncpg

    from demo.postgres import ADMIN_URL

    try:
        connection = await asyncpg.connect(ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"not reachable ({type(exc).__name__})"
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


def machine_facts(quick: bool) -> Machine:
    """The machine, its software and its load now."""
    from demo.broker import MOSQUITTO

    cpuinfo = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")  # fmt: skip
    meminfo = Path("/proc/meminfo").read_text(encoding="ascii").split()
    memory = int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20
    mosquitto = _first_line([MOSQUITTO, "-h"]).removeprefix("mosquitto version ")
    packages = []
    for name in PACKAGES:
        try:
            packages.append((name, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            continue
    commit = _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    return Machine(
        started=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), commit=commit, cpu=cpu,
        cores=os.cpu_count() or 1, memory_gib=round(memory, 1),
        python=platform.python_version(), sqlite=sqlite3.sqlite_version, mosquitto=mosquitto,
        postgresql=asyncio.run(_postgres_version()), load_start=os.getloadavg(),
        packages=tuple(packages), quick=quick,
    )  # fmt: skip


def _save_machine(machine: Machine) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "machine.json").write_text(json.dumps(dataclasses.asdict(machine), indent=1) + "\n")


def _load_machine() -> Machine:
    path = RESULTS / "machine.json"
    if not path.exists():
        return machine_facts(quick=False)
    raw = json.loads(path.read_text())
    raw["load_start"] = tuple(raw["load_start"])
    raw["load_end"] = None if raw["load_end"] is None else tuple(raw["load_end"])
    raw["packages"] = tuple(tuple(p) for p in raw["packages"])
    return Machine(**raw)


def capacity_markdown(results: dict[str, BenchResult]) -> str | None:
    """HOOK: bench.capacity's sizing table from bench.load's result, when both are there."""
    if not present("bench.capacity"):
        return None
    if "load" not in results:
        return "`bench.capacity` sizes from `bench.load`'s result, which this run does not have."
    module = importlib.import_module("bench.capacity")
    try:
        return str(module.markdown_table(module.per_core_from_result(results["load"])))
    except KeyError as missing:  # the load run measured another backend or phase
        return f"`bench.capacity` could not size: `bench.load`'s result lacks {missing}."


def peer_markdown(run: BenchRun) -> str | None:
    """HOOK: bench.peers.thingsboard's own side-by-side table, when it has one."""
    if run.result is None or not present(run.module):
        return None
    function = getattr(importlib.import_module(run.module), "side_by_side_markdown", None)
    return function(run.result) if callable(function) else None


def build_page(machine: Machine) -> list[BenchRun]:
    """Render docs/performance.md and the plots from the results directory; the runs."""
    runs = [load_run(job) for job in JOBS]
    results = {run.name: run.result for run in runs if run.result is not None}
    plots = draw_all(runs, DOCS / "perf")
    flames = sorted(f"perf/{p.name}" for p in (DOCS / "perf").glob("*.svg"))
    peer = next(run for run in runs if run.module == "bench.peers.thingsboard")
    report = Report(
        runs=tuple(runs), machine=machine,
        plots=tuple((title, f"perf/{name}") for title, name in plots),
        flames=tuple(flames), capacity=capacity_markdown(results), peer=peer_markdown(peer),
    )  # fmt: skip
    (DOCS / "performance.md").write_text(render(report), encoding="utf-8")
    return runs


def main(argv: list[str] | None = None) -> int:
    """Run the suite (or part of it), write the page, fail when a gated median missed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, small sizes")
    parser.add_argument("--only", help="comma-separated bench names (see JOBS)")
    parser.add_argument("--skip", default="", help="comma-separated bench names")
    parser.add_argument("--soak", nargs="?", const=1800.0, type=float, metavar="SECONDS",
                        help="run only the G7 memory soak (default 1800 s)")  # fmt: skip
    parser.add_argument("--render-only", action="store_true", help="rebuild the page from results")
    args = parser.parse_args(argv)
    if args.render_only:
        return exit_code(build_page(_load_machine()))
    names = {job.name for job in JOBS}
    wanted = set(args.only.split(",")) if args.only else {j.name for j in JOBS if j.default}
    skip = set(filter(None, args.skip.split(",")))
    if args.soak is not None:
        wanted = {"memory-soak"}
    if unknown := (wanted | skip) - names:
        parser.error(f"unknown bench names {sorted(unknown)}; known: {sorted(names)}")
    machine = machine_facts(args.quick)
    ran = []
    for job in JOBS:
        if job.name not in wanted - skip:
            continue
        if not present(job.module):
            print(f"bench.report: {job.module} is not in the tree yet", flush=True)
            continue
        options = job.quick if args.quick else job.full
        if job.name == "memory-soak" and args.soak is not None:
            options = ("--soak", f"{args.soak:g}")
        ran.append(run_job(job, options))
    machine = dataclasses.replace(machine, load_end=os.getloadavg())
    # A soak or a part of the suite adds to the last suite's page, on that suite's machine facts.
    if args.soak is None and (not args.only or not (RESULTS / "machine.json").exists()):
        _save_machine(machine)
    build_page(_load_machine())
    print(f"bench.report: wrote {DOCS / 'performance.md'}", flush=True)
    return exit_code(ran)


if __name__ == "__main__":
    sys.exit(main())
