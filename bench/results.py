"""One result format for every benchmark, so `bench/report.py` can build docs/performance.md.

Each bench module accepts `--json PATH` (see `add_json_argument`) and, at the end, writes one
`BenchResult` there: its figures (one value per repeat, the target and which side of it passes)
and any series to plot. A figure passes when its median is on the right side of the target; a
bench exits non-zero only when a gated figure misses (`BenchResult.failed`).

Series the report plots (docs/perf/*.png) are found by the prefix of their name,
`<kind>:<label>`; the label names the line in the legend:

- `throughput_vs_points:<label>`: x = configured points (tags), y = readings/s;
- `latency_percentiles:<label>`: x = percentile (50, 90, 99, 99.9, 100), y = milliseconds;
- `rss_over_time:<label>`: x = seconds since the start, y = MiB.

Any other series is drawn on a chart of its own, titled by its name.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

Direction = Literal["at_least", "at_most"]

THROUGHPUT_VS_POINTS = "throughput_vs_points"
LATENCY_PERCENTILES = "latency_percentiles"
RSS_OVER_TIME = "rss_over_time"


def series_name(kind: str, label: str) -> str:
    """The name of a series the report plots with the others of `kind` (see above)."""
    return f"{kind}:{label}"


@dataclass(frozen=True)
class Figure:
    """One measured quantity over the repeats of a run.

    `goal` is the G-number it shows ("G1"...), or "" for a supporting figure. `baseline` says,
    for a ratio, what it is a ratio to (measured in the same run). `gated=False` reports the
    figure against its target without failing the bench (say why in `note`).
    """

    goal: str
    name: str
    unit: str
    values: tuple[float, ...]
    target: float | None = None
    direction: Direction = "at_least"
    baseline: str = ""
    gated: bool = True
    note: str = ""

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError(f"figure {self.name!r} has no values")

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def met(self) -> bool | None:
        """None when the figure has no target."""
        if self.target is None:
            return None
        if self.direction == "at_least":
            return self.median >= self.target
        return self.median <= self.target


@dataclass(frozen=True)
class BenchResult:
    """What one bench measured: figures, series to plot (name -> list of [x, y] points)."""

    bench: str
    figures: tuple[Figure, ...]
    series: dict[str, list[list[float]]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def failed(self) -> tuple[Figure, ...]:
        return tuple(f for f in self.figures if f.gated and f.met is False)


def _readable(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, help="write the result (bench/results.py) here")


def write_result(path: Path | None, result: BenchResult) -> None:
    """Write `result` to `path` when one was asked for; always print a one-line summary."""
    for figure in result.figures:
        verdict = {True: "met", False: "MISSED", None: "-"}[figure.met]
        spread = "/".join(
            _readable(v) for v in (min(figure.values), figure.median, max(figure.values))
        )
        target = "" if figure.target is None else f" target {figure.direction} {figure.target:g}"
        print(
            f"{result.bench}: {figure.goal or '-'} {figure.name} {spread} {figure.unit}{target}"
            f" [{verdict}]"
        )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(result), ensure_ascii=False, indent=1) + "\n")


def finished(path: Path | None, result: BenchResult) -> int:
    """`write_result`, then the bench's exit status: 1 when a gated figure missed its target."""
    write_result(path, result)
    return 1 if result.failed else 0


def read_result(path: Path) -> BenchResult:
    """The result `write_result` wrote; keys a later version added are ignored."""
    raw = json.loads(path.read_text())
    known = {f.name for f in fields(Figure)}
    figures = tuple(
        Figure(
            **{k: v for k, v in f.items() if k in known}
            | {"values": tuple(map(float, f["values"]))}
        )
        for f in raw["figures"]
    )
    return BenchResult(
        bench=raw["bench"],
        figures=figures,
        series={k: [list(map(float, p)) for p in v] for k, v in raw.get("series", {}).items()},
        notes=tuple(raw.get("notes", ())),
    )
