"""Render docs/grafana/ganzhi.json's panels from a real Prometheus into one PNG.

Grafana is not installable on the build machine (no Debian, PyPI or npm package), so this is
not a Grafana screenshot: each panel of the dashboard JSON is drawn with matplotlib where its
gridPos puts it, titled as in the JSON, from the result of its own queries (`query_range`,
Grafana's variables substituted as `grafana_variables` says) against a Prometheus that scraped
a collector and an agent. The test tests/e2e/test_dashboard_prometheus.py runs that setup and
writes the picture when GZ_DASHBOARD_PREVIEW names a file; against any other Prometheus:

    python -m bench.dashboard_preview --prometheus http://127.0.0.1:9090 --minutes 15 out.png
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import matplotlib as mpl
from matplotlib.axes import Axes
from matplotlib.ticker import PercentFormatter

mpl.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

DASHBOARD: Final = Path(__file__).resolve().parents[1] / "docs" / "grafana" / "ganzhi.json"
CAPTION: Final = (
    "Rendered from docs/grafana/ganzhi.json's own queries against a real Prometheus;"
    " not a Grafana screenshot (Grafana is not installable here)."
)
_GRID_COLUMNS: Final = 24
_VARIABLE: Final = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_LEGEND_LABEL: Final = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass(frozen=True)
class Query:
    """One target of a panel: its refId, PromQL as written, and legend format."""

    ref_id: str
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    """A dashboard panel: type, title, grid position (x, y, w, h) and queries."""

    type: str
    title: str
    grid: tuple[int, int, int, int]
    unit: str
    queries: tuple[Query, ...]


@dataclass(frozen=True)
class Series:
    """One series of a query's answer: its labels and (unix time, value) samples."""

    labels: Mapping[str, str]
    samples: tuple[tuple[float, float], ...]


def load_panels(path: Path = DASHBOARD) -> tuple[dict[str, Any], tuple[Panel, ...]]:
    """The dashboard JSON and its panels (rows included, as they take a grid line)."""
    dashboard: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    panels = tuple(
        Panel(
            type=raw["type"],
            title=raw["title"],
            grid=(
                raw["gridPos"]["x"],
                raw["gridPos"]["y"],
                raw["gridPos"]["w"],
                raw["gridPos"]["h"],
            ),
            unit=raw.get("fieldConfig", {}).get("defaults", {}).get("unit", ""),
            queries=tuple(
                Query(t["refId"], t["expr"], t.get("legendFormat", ""))
                for t in raw.get("targets", ())
            ),
        )
        for raw in dashboard["panels"]
    )
    return dashboard, panels


def grafana_variables(
    dashboard: Mapping[str, Any], *, scrape_interval: float, step: float
) -> dict[str, str]:
    """What Grafana puts for the variables queries use, at a given scrape interval and step.

    `$__interval` is the step; `$__rate_interval` is Grafana's max(step + scrape interval,
    4 x scrape interval). A template variable with "All" takes its allValue (what Grafana sends
    when All is picked, the default of a fresh import); another takes its current value.
    """
    variables = {
        "__interval": f"{step:g}s",
        "__rate_interval": f"{max(step + scrape_interval, 4 * scrape_interval):g}s",
        "__range": f"{step:g}s",
    }
    for variable in dashboard.get("templating", {}).get("list", ()):
        if variable.get("type") != "query":
            continue
        if variable.get("includeAll"):
            variables[variable["name"]] = variable.get("allValue") or ".*"
        else:
            variables[variable["name"]] = str(variable.get("current", {}).get("value", ".*"))
    return variables


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """`expr` with each `$name` / `${name}` Grafana variable replaced; KeyError if unknown."""
    return _VARIABLE.sub(lambda m: variables[m.group(1) or m.group(2)], expr)


def series_of(data: Mapping[str, Any]) -> tuple[Series, ...]:
    """The series of a /api/v1/query or /api/v1/query_range `data` (vector or matrix)."""
    return tuple(
        Series(
            labels=item["metric"],
            samples=tuple(
                (float(at), float(value))
                for at, value in (item["values"] if "values" in item else [item["value"]])
            ),
        )
        for item in data["result"]
    )


def legend(query: Query, series: Series) -> str:
    """The series' name as Grafana shows it: the legend format with its labels filled in."""
    if not query.legend:
        return "{" + ", ".join(f'{k}="{v}"' for k, v in series.labels.items()) + "}"
    return _LEGEND_LABEL.sub(lambda m: series.labels.get(m.group(1), ""), query.legend)


def _format(value: float, unit: str) -> str:
    if math.isnan(value):
        return "No data"
    if unit == "percentunit":
        return f"{value * 100:.1f}%"
    suffix = {"s": " s", "reqps": " /s", "ops": " ops/s"}.get(unit, "")
    return f"{value:.3g}{suffix}"


def _last(series: Series) -> float:
    finite = [value for _, value in series.samples if math.isfinite(value)]
    return finite[-1] if finite else math.nan


Results = Mapping[tuple[str, str], Sequence[Series]]  # (panel title, refId) -> series


def render(panels: Sequence[Panel], results: Results, out: Path, *, subtitle: str = "") -> None:
    """Draw the panels where their gridPos puts them and write a PNG to `out`."""
    rows = max(p.grid[1] + p.grid[3] for p in panels)
    header, footer = 2.2, 0.6  # grid units above the panels for the caption, below for ticks
    unit_w, unit_h = 0.62, 0.36  # inches a grid column / grid row takes (Grafana's proportions)
    total = rows + header + footer
    width, height = _GRID_COLUMNS * unit_w, total * unit_h
    figure = plt.figure(figsize=(width, height))
    figure.text(0.01, 1 - 0.55 / total, "Ganzhi", fontsize=16, weight="bold")
    figure.text(0.01, 1 - 1.25 / total, CAPTION, fontsize=10, style="italic")
    if subtitle:
        figure.text(0.01, 1 - 1.85 / total, subtitle, fontsize=8, color="0.35")
    pad_x, pad_y = 0.35 / _GRID_COLUMNS, 1.1 / total
    for panel in panels:
        x, y, w, h = panel.grid
        left, top = x / _GRID_COLUMNS, 1 - (y + header) / total
        if panel.type == "row":
            figure.text(left + 0.005, top - 0.6 / total, panel.title, fontsize=12, weight="bold")
            continue
        axes = figure.add_axes(
            (
                left + pad_x + 0.012,
                top - h / total + pad_y * 0.45,
                w / _GRID_COLUMNS - 2 * pad_x - 0.012,
                h / total - pad_y,
            )
        )
        axes.set_title(panel.title, fontsize=10, loc="left")
        answered = [(q, s) for q in panel.queries for s in results.get((panel.title, q.ref_id), ())]
        if panel.type == "stat":
            _draw_stat(axes, panel, answered)
        else:
            _draw_timeseries(axes, panel, answered)
    figure.savefig(out, dpi=72)
    plt.close(figure)


def _draw_stat(axes: Axes, panel: Panel, answered: Sequence[tuple[Query, Series]]) -> None:
    axes.set_axis_off()
    text = "  ".join(_format(_last(s), panel.unit) for _, s in answered) or "No data"
    axes.text(
        0.5, 0.45, text, fontsize=22, weight="bold", ha="center", va="center", color="#1f7a1f"
    )
    if answered:
        axes.text(
            0.5,
            0.08,
            ", ".join(legend(q, s) for q, s in answered),
            fontsize=8,
            ha="center",
            color="0.4",
        )


def _draw_timeseries(axes: Axes, panel: Panel, answered: Sequence[tuple[Query, Series]]) -> None:
    start = min((s.samples[0][0] for _, s in answered if s.samples), default=0.0)
    for query, series in answered:
        times = [at - start for at, _ in series.samples]
        values = [value for _, value in series.samples]
        axes.plot(times, values, linewidth=1.2, label=legend(query, series))
    axes.tick_params(labelsize=7)
    axes.grid(alpha=0.3)
    if panel.unit == "percentunit":
        axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    elif panel.unit:
        axes.set_ylabel(
            {"s": "seconds", "ops": "per second"}.get(panel.unit, panel.unit), fontsize=7
        )
    if answered:
        axes.legend(fontsize=6, loc="upper left", frameon=False, ncol=2)
    else:
        axes.text(0.5, 0.5, "No data", ha="center", va="center", transform=axes.transAxes)


def query_range(
    prometheus: str,
    panels: Sequence[Panel],
    variables: Mapping[str, str],
    window: tuple[float, float],
    step: float,
) -> dict[tuple[str, str], tuple[Series, ...]]:
    """Every panel query over `window` (unix seconds) at `step`, by (panel title, refId)."""
    results: dict[tuple[str, str], tuple[Series, ...]] = {}
    with httpx.Client(base_url=prometheus, timeout=10) as http:
        for panel in panels:
            for query in panel.queries:
                params: dict[str, str | float] = {
                    "query": substitute(query.expr, variables),
                    "start": window[0],
                    "end": window[1],
                    "step": step,
                }
                body = http.get("/api/v1/query_range", params=params).json()
                if body.get("status") != "success":
                    raise SystemExit(f"{panel.title} {query.ref_id}: {body.get('error')}")
                results[(panel.title, query.ref_id)] = series_of(body["data"])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--minutes", type=float, default=15.0, help="the window, ending now")
    parser.add_argument("--scrape-interval", type=float, default=15.0, help="seconds")
    args = parser.parse_args()
    dashboard, panels = load_panels()
    end = time.time()
    step = max(args.scrape_interval, args.minutes * 60 / 300)
    variables = grafana_variables(dashboard, scrape_interval=args.scrape_interval, step=step)
    results = query_range(args.prometheus, panels, variables, (end - args.minutes * 60, end), step)
    render(panels, results, args.out, subtitle=f"{args.prometheus}, last {args.minutes:g} min")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
