"""The peer bench's figures (bench/results.py) and its side-by-side table for the report.

`figures_of` turns the runs of both gateways into `Figure`s (one value per repeat; ratios are
ours / TB within a repeat); `side_by_side_markdown` is the hook bench/report.py calls with the
result read back: one table, median (min-max) per cell.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from bench.results import BenchResult, Figure


@dataclass(frozen=True)
class RunFigures:
    cpu_pct: float
    rss_peak_mib: float
    rss_steady_mib: float
    readings_per_s: float
    bytes_per_reading: float
    lost: int  # probe.shortfall over the outage window
    expected_in_outage_window: float
    baseline_shortfall: int  # the estimate on the steady phase's 2nd half from its 1st half
    unstored: tuple[int, int] | None  # ours: (sealed by the cut, not stored), exact
    reconnected_after_s: float  # from the broker's restart to the first new delivery (or nan)
    timeline: list[list[float]]  # [seconds since the steady start, readings/s delivered]


def figures_of(tb: list[RunFigures], ours: list[RunFigures]) -> tuple[Figure, ...]:
    noisy = "busy shared 2-core machine: reported, not gated"
    figures: list[Figure] = []
    for attr, name, unit in (
        ("cpu_pct", "CPU", "% of a core"),
        ("rss_peak_mib", "RSS peak", "MiB"),
        ("rss_steady_mib", "RSS steady", "MiB"),
        ("readings_per_s", "readings delivered", "readings/s"),
        ("bytes_per_reading", "bytes on the wire", "B/reading"),
    ):
        tb_values = tuple(float(getattr(r, attr)) for r in tb)
        our_values = tuple(float(getattr(r, attr)) for r in ours)
        figures += [
            Figure("", f"TB gateway {name}", unit, tb_values, gated=False, note=noisy),
            Figure("", f"ours {name}", unit, our_values, gated=False, note=noisy),
            Figure(
                "G9" if attr == "bytes_per_reading" else "",
                f"{name} ours/TB",
                "ratio",
                tuple(o / t for o, t in zip(our_values, tb_values, strict=True)),
                target=0.5 if attr == "bytes_per_reading" else None,
                direction="at_most",
                baseline="TB gateway, same simulator, points and broker, same repeat",
                gated=False,
                note="G9: half of TB's bytes per reading; gated by the wire bench"
                if attr == "bytes_per_reading"
                else noisy,
            ),
        ]
    estimate = (
        "readings due at each point's steady rate from the kill to the restart + settle, less"
        " those that arrived by the end of the recovery (bench/peers/probe.py shortfall)"
    )
    resolution = (
        "the same estimate, no outage: the steady phase's second half at the rate of its first"
    )
    back = "from the broker's restart to the first reading delivered again (reconnect backoff)"
    figures += [
        Figure(
            "", "TB gateway back after the restart", "s",
            tuple(r.reconnected_after_s for r in tb), gated=False, note=back,
        ),
        Figure(
            "", "ours back after the restart", "s",
            tuple(r.reconnected_after_s for r in ours), gated=False, note=back,
        ),
        Figure(
            "", "TB gateway readings lost in the outage", "readings",
            tuple(float(r.lost) for r in tb), gated=False,
            note=f"{estimate}; shipped default storage (memory)",
        ),
        Figure(
            "", "TB gateway loss estimate without an outage", "readings",
            tuple(float(r.baseline_shortfall) for r in tb), gated=False, note=resolution,
        ),
        Figure(
            "", "ours readings lost in the outage", "readings",
            tuple(float(r.lost) for r in ours), gated=False, note=estimate,
        ),
        Figure(
            "", "ours loss estimate without an outage", "readings",
            tuple(float(r.baseline_shortfall) for r in ours), gated=False, note=resolution,
        ),
        Figure(
            "", "ours readings sealed and never stored", "readings",
            tuple(float(r.unstored[1]) if r.unstored else float("nan") for r in ours),
            target=0.0, direction="at_most",
            note=(
                "exact: the outbox's blocks sealed up to 5 s before the end of the run (outage"
                " included) against the collector's rows of each block"
            ),
        ),
    ]  # fmt: skip
    return tuple(figures)


# (row label, TB figure, our figure, ratio figure or "")
_ROWS = (
    ("CPU, % of a core", "TB gateway CPU", "ours CPU", "CPU ours/TB"),
    ("RSS peak, MiB", "TB gateway RSS peak", "ours RSS peak", "RSS peak ours/TB"),
    ("RSS steady, MiB", "TB gateway RSS steady", "ours RSS steady", "RSS steady ours/TB"),
    (
        "readings/s delivered",
        "TB gateway readings delivered",
        "ours readings delivered",
        "readings delivered ours/TB",
    ),
    (
        "bytes per reading on the wire",
        "TB gateway bytes on the wire",
        "ours bytes on the wire",
        "bytes on the wire ours/TB",
    ),
    (
        "readings lost, broker killed for the outage",
        "TB gateway readings lost in the outage",
        "ours readings lost in the outage",
        "",
    ),
    (
        "loss estimate without an outage (resolution)",
        "TB gateway loss estimate without an outage",
        "ours loss estimate without an outage",
        "",
    ),
    ("readings sealed and never stored (exact)", "", "ours readings sealed and never stored", ""),
    (
        "seconds from the broker's restart to delivering again",
        "TB gateway back after the restart",
        "ours back after the restart",
        "",
    ),
)


def _cell(figure: Figure | None, digits: int) -> str:
    if figure is None or any(math.isnan(v) for v in figure.values):
        return "-"
    low, mid, high = min(figure.values), statistics.median(figure.values), max(figure.values)
    if len(figure.values) == 1 or low == high:
        return f"{mid:,.{digits}f}"
    return f"{mid:,.{digits}f} ({low:,.{digits}f} to {high:,.{digits}f})"


def side_by_side_markdown(result: BenchResult) -> str:
    """The side-by-side table: median (min-max) over the repeats, then the run's notes."""
    by_name = {f.name: f for f in result.figures}
    repeats = max((len(f.values) for f in result.figures), default=0)
    lines = [
        f"Median (min-max) over {repeats} repeat(s); ratios are ours / TB within a repeat.",
        "",
        "| | ThingsBoard IoT Gateway | ours (edge-agent) | ours / TB |",
        "|---|---:|---:|---:|",
    ]
    for label, tb, ours, ratio in _ROWS:
        digits = 0 if any(word in label for word in ("lost", "loss", "never")) else 1
        lines.append(
            f"| {label} | {_cell(by_name.get(tb), digits)} | {_cell(by_name.get(ours), digits)}"
            f" | {_cell(by_name.get(ratio), 2)} |"
        )
    lines += ["", *(f"- {note}" for note in result.notes)]
    return "\n".join(lines) + "\n"
