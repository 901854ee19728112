"""`edge-agent backfill` throughput and memory beside a live agent, against a same-run baseline.

Set-up: a real Mosquitto, the tank-farm Modbus simulator and `edge-agent run` (no collector:
the agent polls, seals and publishes as on a site whose uplink has no ACKs yet, so it keeps
resending its backlog). The CSV files are instrument-log exports: every point of the site
once per second, in time order, with quality and (for some rows) a unit to convert.

Measured, in this order, with the agent running throughout:
- baseline, before the imports and again after them (their mean): the same 1M-row file
  through `csv.reader`, one JSON object per row, JSON-encoded in batches of the backfill's
  block size and each batch inserted as one row into a fresh SQLite file (WAL,
  synchronous=FULL, one commit per batch) - the least work that moves CSV rows into durable
  storage, without validation, conversion, hashing, signing or dedupe keys;
- `edge-agent backfill --json` of a 100k-row file and of the 1M-row file (real processes):
  rows/s of the 1M import (the command's own `seconds`) and each process's peak RSS;
- `edge-agent outbox export --json` of the whole outbox (about 1.1M readings) and of one
  block, peak RSS of each: export streams, so both should be about equal.

Targets: backfill >= 0.15x the baseline (about 50,000 rows/s on a 2-core box); peak RSS of
the 1M import <= 1.25x that of the 100k import, export of everything <= 1.25x export of one
block. Each repeat (`--repeats`, default 3) is a fresh broker, agent and outbox; the CSV files
are written once. Result (bench/results.py, `--json PATH`): min/median/max of every figure;
exit 1 when a gated median misses. Run: `.venv/bin/python -m bench.backfill [--rows 1000000]
[--repeats 3]` (`make bench`; about 1 min per repeat at the defaults on a 2-core box).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.results import BenchResult, Figure, add_json_argument, finished
from demo.__main__ import write_configs
from demo.broker import Broker, free_port, wait_for_port
from edge_agent.backfill.importer import BLOCK_READINGS

BIN = Path(sys.executable).parent
POINTS = (
    ("T001-LT-01", "m"), ("T001-TT-01", "℃"), ("T001-PT-01", "MPa"),
    ("T002-LT-01", "m"), ("T002-TT-01", "℃"), ("T002-PT-01", "MPa"),
    ("T003-LT-01", "m"), ("T003-TT-01", "℃"), ("T003-PT-01", "MPa"),
    ("T001-LEL-01", "%LEL"), ("T002-LEL-01", "%LEL"), ("T003-LEL-01", "%LEL"),
    ("T001-TOX-01", "ppm"), ("T002-TOX-01", "ppm"), ("T003-TOX-01", "ppm"),
)  # fmt: skip
RATIO_TARGET = 0.15
RSS_TARGET = 1.25
ABSOLUTE_GOAL = 50_000


@dataclass(frozen=True)
class Run:
    """One finished child process: its stdout and peak resident set size."""

    stdout: str
    max_rss_kib: int


def run_measured(argv: list[str], cwd: Path, stdout_path: Path | None = None) -> Run:
    """Run a command to completion; its peak RSS comes from wait4 on exactly that child."""
    out_path = stdout_path or cwd / "child.out"
    with out_path.open("wb") as out, (cwd / "child.err").open("wb") as err:
        process = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        message = (cwd / "child.err").read_text(encoding="utf-8", errors="replace")
        raise SystemExit(f"{' '.join(argv)} exited {process.returncode}: {message[-2000:]}")
    text = "" if stdout_path else out_path.read_text(encoding="utf-8")
    return Run(text, int(usage.ru_maxrss))


def write_log(path: Path, rows: int, start: int) -> None:
    """`rows` rows: each second, every point; LT points every 10th second in cm."""
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("point,t,value,quality,unit\n")
        second = start
        written = 0
        while written < rows:
            local = time.gmtime(second + 8 * 3600)
            t = time.strftime("%Y-%m-%d %H:%M:%S", local)
            for index, (point, unit) in enumerate(POINTS):
                if written == rows:
                    break
                value = 1.0 + (second * 7 + index * 13) % 997 / 100
                if unit == "m" and second % 10 == 0:
                    out.write(f"{point},{t},{value * 100:.1f},good,cm\n")
                else:
                    quality = "uncertain" if second % 97 == 0 else "good"
                    out.write(f"{point},{t},{value:.3f},{quality},\n")
                written += 1
            second += 1


def baseline_rate(path: Path, work: Path) -> float:
    """Rows/s of csv.reader + JSON per row + one FULL-synchronous SQLite insert per batch."""
    for old in work.glob("baseline.db*"):
        old.unlink()
    db = sqlite3.connect(work / "baseline.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE batches (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)")
    started = time.perf_counter()
    rows = 0
    with path.open(encoding="utf-8", newline="") as source:
        reader = csv.reader(source)
        header = next(reader)
        batch: list[dict[str, str]] = []
        for cells in reader:
            batch.append(dict(zip(header, cells, strict=True)))
            if len(batch) == BLOCK_READINGS:
                rows += _store(db, batch)
                batch = []
        rows += _store(db, batch)
    elapsed = time.perf_counter() - started
    db.close()
    return rows / elapsed


def _store(db: sqlite3.Connection, batch: list[dict[str, str]]) -> int:
    if batch:
        db.execute("BEGIN")
        db.execute("INSERT INTO batches (payload) VALUES (?)", (json.dumps(batch).encode(),))
        db.execute("COMMIT")
    return len(batch)


def backfill(work: Path, csv_path: Path) -> tuple[dict[str, float], int]:
    """`edge-agent backfill --json` as a real process: its counts and its peak RSS (KiB).

    The counts gain `wall`: the whole process's seconds, interpreter start included.
    """
    started = time.perf_counter()
    done = run_measured(
        [str(BIN / "edge-agent"), "backfill", "-c", "site.yaml", "--csv", str(csv_path), "--json"],
        work,
    )
    counts = json.loads(done.stdout)
    counts["wall"] = time.perf_counter() - started
    return counts, done.max_rss_kib


def one_repeat(small: Path, big: Path, small_rows: int, big_rows: int) -> dict[str, float]:
    """Baseline, both imports and both exports beside a live agent, in a fresh directory."""
    work = Path(tempfile.mkdtemp(prefix="ganzhi-bench-backfill-"))
    broker = Broker(port=free_port(), workdir=work)
    sim_port = free_port()
    children: list[subprocess.Popen[bytes]] = []
    try:
        broker.start()
        write_configs(work, "tankfarm", broker.url, sim_port, free_port())
        # The agent verifies ACKs with the collector's key; no collector runs here.
        for argv in (
            ("collector", "keys", "init", "-c", "collector.yaml"),
            ("edge-agent", "keys", "init", "-c", "site.yaml"),
        ):
            subprocess.run(
                [str(BIN / argv[0]), *argv[1:]], cwd=work, check=True, capture_output=True
            )
        sim = [str(BIN / "python"), "-m", "simulators", "--profile", "tankfarm"]
        with (work / "sim.log").open("wb") as log:
            children.append(
                subprocess.Popen(
                    [*sim, "--port", str(sim_port)], cwd=work, stdout=log, stderr=subprocess.STDOUT
                )
            )
        wait_for_port(sim_port)
        with (work / "agent.log").open("wb") as log:
            children.append(
                subprocess.Popen(
                    [str(BIN / "edge-agent"), "run", "-c", "site.yaml"],
                    cwd=work,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        time.sleep(3)  # the agent polls and seals before the import starts
        if children[-1].poll() is not None:
            raise SystemExit("edge-agent run exited early; see agent.log")

        # Before and after the imports (the agent is busiest publishing after them): the
        # mean of both, so the ratio does not hang on one moment of a shared machine.
        baselines = [baseline_rate(big, work)]
        small_counts, small_rss = backfill(work, small)
        big_counts, big_rss = backfill(work, big)
        baselines.append(baseline_rate(big, work))
        if children[-1].poll() is not None:
            raise SystemExit("edge-agent run died during the import")
        export_all = run_measured(
            [str(BIN / "edge-agent"), "outbox", "export", "-c", "site.yaml", "--json"],
            work,
            stdout_path=work / "export.json",
        )
        export_one = run_measured(
            [str(BIN / "edge-agent"), "outbox", "export", "-c", "site.yaml", "--json",
             "--to-seq", "1"],
            work, stdout_path=work / "export-one.json",
        )  # fmt: skip
    finally:
        for child in reversed(children):
            child.terminate()
            child.wait(timeout=30)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)

    for counts, rows in ((small_counts, small_rows), (big_counts, big_rows)):
        if (counts["imported"], counts["rejected"]) != (rows, 0):
            raise SystemExit(f"import went wrong: {counts} for {rows} rows")
    rate = big_rows / big_counts["seconds"]
    baseline = statistics.fmean(baselines)
    return {
        "rows_per_s": rate,
        "rows_per_s_process_wall": big_rows / big_counts["wall"],
        "small_rows_per_s": small_rows / small_counts["seconds"],
        "baseline_rows_per_s": baseline,
        "ratio": rate / baseline,
        "rss_small_mib": small_rss / 1024,
        "rss_big_mib": big_rss / 1024,
        "rss_ratio": big_rss / small_rss,
        "rss_export_all_mib": export_all.max_rss_kib / 1024,
        "rss_export_one_mib": export_one.max_rss_kib / 1024,
        "rss_export_ratio": export_all.max_rss_kib / export_one.max_rss_kib,
    }


def figures(runs: list[dict[str, float]], small_rows: int, big_rows: int) -> tuple[Figure, ...]:
    """The result's figures, each over the repeats."""

    def values(key: str, digits: int = 3) -> tuple[float, ...]:
        return tuple(round(r[key], digits) for r in runs)

    big, small = f"{big_rows:,}-row", f"{small_rows:,}-row"
    return (
        Figure("", f"backfill rows/s, {big} import", "rows/s", values("rows_per_s", 0),
               note=f"about {ABSOLUTE_GOAL:,} rows/s on a 2-core box"),
        Figure("", "backfill over the csv+JSON+SQLite baseline", "x", values("ratio"),
               target=RATIO_TARGET, baseline="csv.reader, JSON per batch, SQLite FULL commit per "
               "batch; mean of before and after the imports"),
        Figure("", "baseline rows/s", "rows/s", values("baseline_rows_per_s", 0)),
        Figure("", f"backfill rows/s, {small} import", "rows/s", values("small_rows_per_s", 0)),
        Figure("", f"peak RSS, {big} import", "MiB", values("rss_big_mib", 1)),
        Figure("", f"peak RSS, {big} import over {small} import", "x", values("rss_ratio"),
               target=RSS_TARGET, direction="at_most", baseline=f"peak RSS of the {small} import"),
        Figure("", "peak RSS, outbox export of everything", "MiB",
               values("rss_export_all_mib", 1)),
        Figure("", "peak RSS, export of everything over export of one block", "x",
               values("rss_export_ratio"), target=RSS_TARGET, direction="at_most",
               baseline="peak RSS of exporting one block"),
    )  # fmt: skip


def main() -> int:
    """Measure, write the result, and fail when a gated median misses its target."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    add_json_argument(parser)
    args = parser.parse_args()
    files = Path(tempfile.mkdtemp(prefix="ganzhi-bench-backfill-csv-"))
    try:
        small, big = files / "small.csv", files / "big.csv"
        write_log(small, args.small, start=1_672_531_200)  # 2023-01-01
        write_log(big, args.rows, start=1_688_169_600)  # 2023-07-01
        runs = [one_repeat(small, big, args.small, args.rows) for _ in range(args.repeats)]
    finally:
        shutil.rmtree(files, ignore_errors=True)
    result = BenchResult(
        "backfill",
        figures(runs, args.small, args.rows),
        notes=(("`edge-agent backfill` and `outbox export` run as real processes beside a live "
               "`edge-agent run` polling the tank-farm simulator."),),
    )  # fmt: skip
    return finished(args.json, result)


if __name__ == "__main__":
    sys.exit(main())
