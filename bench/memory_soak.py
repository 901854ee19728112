"""G7's flat-memory soak: one case of bench/memory.py run for `--soak` seconds (1800 for the
30-minute soak, `make bench-soak`), the agent's RSS sampled every `--soak-every` seconds.

Growth = mean of the last tenth of the samples over the mean of the second tenth (the first
tenth is warm-up: SQLite's page cache, the collector catching up); target <= 2 %. The samples
are the result's `rss_over_time:` series (the report's RSS plot). Run through
`.venv/bin/python -m bench.memory --soak 1800 [--json PATH]`.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

from bench.memory import TARGET_SOAK_GROWTH, Case, SiteRun, baselines
from bench.results import RSS_OVER_TIME, BenchResult, Figure, series_name


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
        "samples": [[round(t, 1), round(r / 1024, 2)] for t, r in rows],
    }


def soak_result(soaked: dict[str, Any], installed: bool) -> BenchResult:
    """The soak as a result: growth (gated), settled/end/peak RSS, the samples as a series."""
    case = soaked["soak_case"]
    seconds = soaked["soak_seconds"]
    span = f"{seconds / 60:.0f}-minute" if seconds >= 120 else f"{seconds:.0f}-second"
    return BenchResult(
        "memory",
        (
            Figure("G7", f"RSS growth over a {span} soak, {case}", "%",
                   (round(100 * soaked["soak_growth"], 2),), target=100 * TARGET_SOAK_GROWTH,
                   direction="at_most",
                   baseline="mean RSS of the second tenth of the soak (after warm-up)"),
            Figure("", f"soak settled RSS, {case}", "MiB", (soaked["soak_settled_mib"],)),
            Figure("", f"soak end RSS, {case}", "MiB", (soaked["soak_end_mib"],)),
            Figure("", f"soak peak RSS, {case}", "MiB", (soaked["soak_peak_mib"],)),
            *baselines(),
        ),
        series={series_name(RSS_OVER_TIME, f"{case}, {span} soak"): soaked["samples"]},
        notes=(f"{soaked['soak_samples']} samples; agent without dev-only packages: {installed}",),
    )  # fmt: skip
