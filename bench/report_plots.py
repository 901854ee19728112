"""The report's plots (docs/perf/*.png) from the benches' series (see bench/results.py).

Three charts gather the series of a known kind from every bench: throughput vs points,
latency percentiles, RSS over time (the soak). Any other series gets a chart of its own.
matplotlib's object API (no pyplot, no display): the Agg canvas renders the PNG.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

from matplotlib.figure import Figure as Chart

from bench.report_render import BenchRun
from bench.results import LATENCY_PERCENTILES, RSS_OVER_TIME, THROUGHPUT_VS_POINTS

RSS_SOAK = "rss_soak"  # rss_over_time series whose label says soak: minutes, not seconds
KINDS = {
    THROUGHPUT_VS_POINTS: ("Throughput vs points", "configured points", "readings/s"),
    LATENCY_PERCENTILES: ("Latency percentiles (p50 and up)", "percentile", "ms (log scale)"),
    RSS_OVER_TIME: ("Agent RSS over time", "seconds", "MiB"),
    RSS_SOAK: ("Agent RSS over the soak", "seconds", "MiB"),
}
FILES = {
    THROUGHPUT_VS_POINTS: "throughput-vs-points.png",
    LATENCY_PERCENTILES: "latency-percentiles.png",
    RSS_OVER_TIME: "rss-over-time.png",
    RSS_SOAK: "rss-soak.png",
}

Lines = list[tuple[str, list[list[float]]]]  # (legend label, [[x, y], ...])


def percentile_curve(values: Sequence[float]) -> list[list[float]]:
    """[percentile, value] from 0 to 100 of `values` (nearest rank)."""
    ordered = sorted(values)
    last = len(ordered) - 1
    return [[q, ordered[round(q / 100 * last)]] for q in range(101)] if ordered else []


# Series named before the kinds were: (bench, name pattern) -> kind, label, points transform.
Alias = tuple[str, re.Pattern[str], str, Callable[[list[list[float]]], list[list[float]]]]
ALIASES: tuple[Alias, ...] = (
    # bench.latency: "<protocol> latency percentiles", percentile -> seconds
    ("latency", re.compile(r"(?P<label>.+) latency percentiles$"), LATENCY_PERCENTILES,
     lambda points: [[q, 1000 * s] for q, s in points]),
    # bench.replay: "live_latency_<phase>_ms", block -> ms
    ("replay", re.compile(r"live_latency_(?P<label>.+)_ms$"), LATENCY_PERCENTILES,
     lambda points: percentile_curve([ms for _, ms in points])),
)  # fmt: skip


Points = list[list[float]]


def _known(bench: str, name: str, points: Points) -> tuple[str, str, Points] | None:
    """(kind, label, points) of a series of a known kind, by its prefix or an alias."""
    kind, sep, label = name.partition(":")
    if sep and kind == RSS_OVER_TIME and "soak" in label:
        return RSS_SOAK, label, points
    if sep and kind in KINDS:
        return kind, label, points
    for alias_bench, pattern, alias_kind, transform in ALIASES:
        if bench == alias_bench and (match := pattern.match(name)):
            label = f"live, {match['label']}" if bench == "replay" else match["label"]
            return alias_kind, label, transform(points)
    return None


def gather(runs: Sequence[BenchRun]) -> dict[str, Lines]:
    """Series by kind: (legend label, points); those of no known kind by bench, one chart each."""
    found: dict[str, Lines] = {}
    for run in runs:
        if run.result is None:
            continue
        for name, points in sorted(run.result.series.items()):
            known = _known(run.name, name, points)
            if known is not None:
                kind, label, drawn = known
                found.setdefault(kind, []).append((f"{label} ({run.name})", drawn))
            else:
                found.setdefault(run.name, []).append((name, points))
    return found


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _draw(path: Path, title: str, axes_labels: tuple[str, str], lines: Lines, kind: str) -> None:
    chart = Chart(figsize=(7, 4), dpi=100)
    axes = chart.add_subplot()
    for label, points in lines:
        xs = [p[0] for p in points]
        ys = [p[1] for p in points]
        axes.plot(xs, ys, marker="o" if len(points) <= 30 else None, label=label)
    axes.set_title(title)
    axes.set_xlabel(axes_labels[0])
    axes.set_ylabel(axes_labels[1])
    if kind == THROUGHPUT_VS_POINTS:  # from zero: the drop with size is to scale
        axes.set_xscale("log")
        ticks = sorted({p[0] for _, points in lines for p in points})
        axes.set_xticks(ticks, [f"{t:,.0f}" for t in ticks])
        axes.tick_params(axis="x", which="minor", labelbottom=False)
        axes.set_ylim(bottom=0)
    if kind == LATENCY_PERCENTILES:  # the tail is the story: p50 up, milliseconds to seconds
        axes.set_xlim(50, 100)
        axes.set_yscale("log")
    axes.grid(visible=True, alpha=0.3)
    axes.legend(fontsize="small")
    chart.tight_layout()
    # No Software metadata: the PNG changes only when the figures do.
    chart.savefig(path, format="png", metadata={"Software": None})


def draw_all(runs: Sequence[BenchRun], out_dir: Path) -> list[tuple[str, str]]:
    """Draw every chart into `out_dir`; (title, file name) of each, known kinds first."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in (*(out_dir / name for name in FILES.values()), *out_dir.glob("series-*.png")):
        old.unlink(missing_ok=True)  # a chart whose series are gone goes with them
    drawn = []
    for kind, lines in gather(runs).items():
        if kind in KINDS:
            title, xlabel, ylabel = KINDS[kind]
            name = FILES[kind]
            _draw(out_dir / name, title, (xlabel, ylabel), lines, kind)
        else:
            title, name = f"{kind}: other series", f"series-{_slug(kind)}.png"
            _draw(out_dir / name, title, ("x", "y"), lines, kind)
        drawn.append((title, name))
    order = list(KINDS)
    return sorted(drawn, key=lambda d: next((i for i, k in enumerate(order) if FILES[k] == d[1]),
                                            len(order)))  # fmt: skip
