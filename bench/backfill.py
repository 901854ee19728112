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
block. Run: `.venv/bin/python -m bench.backfill` (`make bench`). One JSON line of figures;
exit 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

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


def main() -> int:
    """Measure, print one JSON line, and fail when a target is missed."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    args = parser.parse_args()
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
        small, big = work / "small.csv", work / "big.csv"
        write_log(small, args.small, start=1_672_531_200)  # 2023-01-01
        write_log(big, args.rows, start=1_688_169_600)  # 2023-07-01
        sim = [str(BIN / "python"), "-m", "drivers.sim", "--profile", "tankfarm"]
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
        baseline = sum(baselines) / len(baselines)
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
        export_bytes = (work / "export.json").stat().st_size
    finally:
        for child in reversed(children):
            child.terminate()
            child.wait(timeout=30)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)

    for counts, rows in ((small_counts, args.small), (big_counts, args.rows)):
        if (counts["imported"], counts["rejected"]) != (rows, 0):
            raise SystemExit(f"import went wrong: {counts} for {rows} rows")
    rate = args.rows / big_counts["seconds"]
    figures = {
        "rows": args.rows,
        "backfill_rows_per_s": round(rate),
        "backfill_rows_per_s_process_wall": round(args.rows / big_counts["wall"]),
        "baseline_rows_per_s": round(baseline),
        "baseline_before_after": [round(b) for b in baselines],
        "ratio_backfill_to_baseline": round(rate / baseline, 3),
        "small_rows": args.small,
        "small_rows_per_s": round(args.small / small_counts["seconds"]),
        "peak_rss_mib_small": round(small_rss / 1024, 1),
        "peak_rss_mib_big": round(big_rss / 1024, 1),
        "rss_ratio_big_to_small": round(big_rss / small_rss, 3),
        "export_mib": round(export_bytes / 2**20, 1),
        "peak_rss_mib_export_all": round(export_all.max_rss_kib / 1024, 1),
        "peak_rss_mib_export_one": round(export_one.max_rss_kib / 1024, 1),
        "rss_ratio_export_all_to_one": round(export_all.max_rss_kib / export_one.max_rss_kib, 3),
        "absolute_goal_rows_per_s": ABSOLUTE_GOAL,
    }
    print(json.dumps(figures))
    ok = (
        figures["ratio_backfill_to_baseline"] >= RATIO_TARGET
        and figures["rss_ratio_big_to_small"] <= RSS_TARGET
        and figures["rss_ratio_export_all_to_one"] <= RSS_TARGET
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
