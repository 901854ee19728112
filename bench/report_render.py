"""docs/performance.md from bench results: a pure function of what the benches measured.

`render(report)` builds the page; `failures(runs)` and `exit_code(runs)` decide whether
`make bench` fails. A bench fails the suite only when a gated figure's median misses its target
(`BenchResult.failed`) or when it ended without a result (an error is not a measurement); a
bench module that is not in the tree yet is reported as such and fails nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from bench.results import BenchResult, Figure

Status = Literal["ok", "missed", "error", "absent", "not run"]


@dataclass(frozen=True)
class Goal:
    """One row of ../shared/reference/performance.md section 5 (and issue 11)."""

    number: str
    goal: str
    target: str
    independent: str
    bench: str


GOALS = (
    Goal("G1", "Agent pipeline (acquisition stubbed: encode, sign, durable SQLite, MQTT)",
         "≥ 100 k readings/s per core", "≥ 0.5x raw batched publish; ≤ 10 µs agent CPU per reading",
         "bench.throughput"),
    Goal("G2", "Agent with real acquisition (≥ 2,000 Modbus TCP points)",
         "≥ 50 k readings/s sealed on one core", "agent CPU per reading ≤ 2x G1's",
         "bench.acquisition"),
    Goal("G3", "Collector ingest into SQLite (verify, normalize, store, ACK)",
         "≥ 50 k readings/s per core", "≥ 5x the Ed25519 single-verify rate", "bench.collector"),
    Goal("G4", "Collector into PostgreSQL (COPY)",
         "≥ 40 k readings/s per process; 2 processes ≥ 1.7x one",
         "CPU per reading into PG ≤ 1.2x SQLite's", "bench.collector"),
    Goal("G5", "Replay after an outage, live polling continues",
         "3.6 M backlog drains in ≤ 3 min; live p99 ≤ 2x normal",
         "replay ≥ 0.6x G1; memory flat", "bench.replay"),
    Goal("G6", "Latency poll → stored at the collector",
         "p99 ≤ flush interval + 50 ms, OPC UA included", "—", "bench.latency"),
    Goal("G7", "Agent RSS, 1,000 tags, 10 devices, steady",
         "≤ 60 MB Modbus only, ≤ 80 MB with OPC UA",
         "growth ≤ 5 MB per 1,000 tags; flat 30-min soak (≤ 2 %)", "bench.memory"),
    Goal("G8", "1,000 tags at 1 s", "≤ 1.5 % of one core",
         "µs/reading at 1 k/s ≤ 1.5x at saturation", "bench.acquisition"),
    Goal("G9", "Bytes on the wire", "≤ 10 B per reading, half of ThingsBoard IoT Gateway's",
         "compressed/raw ≤ 0.06", "bench.wire"),
    Goal("G10", "RTU scheduling at 19,200 baud", "≥ 90 % of theoretical",
         "utilisation reported within ±10 %", "bench.rtu"),
)  # fmt: skip


@dataclass(frozen=True)
class BenchRun:
    """One bench as this suite ran it (or found it absent)."""

    name: str
    module: str
    argv: tuple[str, ...] = ()
    seconds: float = 0.0
    returncode: int | None = None  # None: not run
    result: BenchResult | None = None
    error: str = ""
    finished: str = ""  # ISO time the run ended
    present: bool = True  # False: the module is not in the tree yet
    how_to_run: str = ""  # for a bench not run by default: how to
    load_start: float | None = None  # the 1-minute load average when it started

    @property
    def status(self) -> Status:
        if not self.present:
            return "absent"
        if self.returncode is None:
            return "not run"
        if self.result is None or self.returncode not in (0, 1):
            return "error"
        return "missed" if self.result.failed else "ok"


@dataclass(frozen=True)
class Machine:
    """What the figures were measured on."""

    started: str
    commit: str
    cpu: str
    cores: int
    memory_gib: float
    python: str
    sqlite: str
    mosquitto: str
    postgresql: str
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float] | None = None
    packages: tuple[tuple[str, str], ...] = ()
    quick: bool = False


@dataclass(frozen=True)
class Report:
    """Everything the page shows; paths are relative to docs/."""

    runs: tuple[BenchRun, ...]
    machine: Machine
    plots: tuple[tuple[str, str], ...] = ()  # (title, path)
    flames: tuple[str, ...] = ()
    capacity: str | None = None  # markdown from bench.capacity, when it is there
    peer: str | None = None  # markdown from bench.peers.thingsboard, when it has its own table
    notes: tuple[str, ...] = field(default_factory=tuple)


def failures(runs: Iterable[BenchRun]) -> list[tuple[str, Figure]]:
    """(bench name, figure) of every gated figure whose median misses its target."""
    return [(run.name, f) for run in runs if run.result is not None for f in run.result.failed]


def exit_code(runs: Sequence[BenchRun]) -> int:
    """1 when a gated median missed or a bench ended without a result, else 0."""
    return 1 if failures(runs) or any(run.status == "error" for run in runs) else 0


def number(value: float) -> str:
    """A figure as people read it: thousands separated, about four significant digits."""
    if math.isnan(value):
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if value == int(value):
        return f"{value:.0f}"
    return f"{value:.3g}" if abs(value) >= 0.01 else f"{value:.2g}"


def spread(figure: Figure) -> str:
    values = figure.values
    if len(values) == 1:
        return f"{number(values[0])} (1 run)"
    return f"{number(min(values))} / **{number(figure.median)}** / {number(max(values))}"


def target_text(figure: Figure) -> str:
    if figure.target is None:
        return "—"
    sign = "≥" if figure.direction == "at_least" else "≤"
    return f"{sign} {number(figure.target)}"


def verdict(figure: Figure) -> str:
    """met / MISSED / missed, not gated (why) / no target."""
    if figure.met is None:
        return "for the record"
    if figure.met:
        return "met"
    if not figure.gated:
        return f"missed, not gated: {figure.note}" if figure.note else "missed, not gated"
    return "**MISSED**"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _figure_row(figure: Figure) -> str:
    cells = (
        figure.name, figure.unit, spread(figure), target_text(figure), figure.baseline or "—",
        verdict(figure), figure.note if figure.met is not False or figure.gated else "",
    )  # fmt: skip
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def figure_table(figures: Sequence[Figure]) -> list[str]:
    """A markdown table of `figures`: min / median / max, target, baseline, verdict."""
    return [
        (
            "| Figure | Unit | min / **median** / max | Target | Ratio to (same run) | Verdict "
            "| Note |"
        ),
        "|---|---|---|---|---|---|---|",
        *(_figure_row(f) for f in figures),
    ]


def goal_table(runs: Sequence[BenchRun]) -> list[str]:
    """The G1-G10 table: every goal with the figures measured for it, or why there are none."""
    by_goal: dict[str, list[tuple[BenchRun, Figure]]] = {}
    for run in runs:
        if run.result is not None:
            for figure in run.result.figures:
                by_goal.setdefault(figure.goal, []).append((run, figure))
    status: dict[str, BenchRun] = {}
    for run in runs:  # a module's first run (bench.memory before its soak)
        status.setdefault(run.module, run)
    lines = [
        (
            "| # | Goal | Target (2-core VM) | Hardware-independent form | Measured: figure, min / "
            "**median** / max | Target | Ratio to (same run) | Verdict |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    for goal in GOALS:
        head = f"| {goal.number} | {_cell(goal.goal)} | {_cell(goal.target)} | "
        head += f"{_cell(goal.independent)} | "
        rows = by_goal.get(goal.number, [])
        if not rows:
            state = status[goal.bench].status if goal.bench in status else "not run"
            why = {
                "not run": f"`{goal.bench}` not run",
                "absent": f"`{goal.bench}` not in the tree yet",
                "error": f"`{goal.bench}` ended with an error",
            }.get(state, f"`{goal.bench}` has no {goal.number} figure")
            lines.append(head + f"not measured: {why} | — | — | — |")
            continue
        for i, (_, figure) in enumerate(rows):
            lead = head if i == 0 else "| | | | | "
            measured = f"{figure.name}: {spread(figure)} {figure.unit}"
            lines.append(
                lead + f"{_cell(measured)} | {target_text(figure)} | "
                f"{_cell(figure.baseline or '—')} | {_cell(verdict(figure))} |"
            )
    return lines


def machine_section(machine: Machine) -> list[str]:
    def load(avg: tuple[float, float, float] | None) -> str:
        return "—" if avg is None else " / ".join(f"{x:.2f}" for x in avg)

    quick = (
        " in quick mode (one repeat, small sizes; a bench run since shows its own command below)"
        if machine.quick
        else ""
    )
    software = (
        f"Python {machine.python}; SQLite {machine.sqlite}; Mosquitto {machine.mosquitto}; "
        f"PostgreSQL {machine.postgresql}"
    )
    lines = [
        f"- Suite run: {machine.started} on commit `{machine.commit}`{quick}",
        f"- CPU: {machine.cpu}, {machine.cores} cores; memory {machine.memory_gib:.1f} GiB",
        f"- {software}",
        f"- Load average (1 / 5 / 15 min) at the start: {load(machine.load_start)}; at the end: "
        + load(machine.load_end),
    ]
    if machine.packages:
        lines.append("- Packages: " + ", ".join(f"{n} {v}" for n, v in machine.packages))
    busy = machine.load_start[0] >= machine.cores * 0.5
    lines.append(
        "- The machine was "
        + ("busy (other work shared the cores): " if busy else "quiet at the start; still, ")
        + "absolute figures are ±30 %, ratios to a baseline of the same run are what gate."
    )
    return lines


def bench_section(run: BenchRun) -> list[str]:
    """One bench: how it ran, its figures, its notes."""
    lines = [f"### {run.name} (`{run.module}`)", ""]
    if run.status == "absent":
        return [*lines, "Not in the tree yet: nothing measured.", ""]
    if run.status == "not run":
        return [*lines, f"Not run{': ' + run.how_to_run if run.how_to_run else ''}.", ""]
    command = " ".join(("python", "-m", run.module, *run.argv))
    lines.append(
        f"`{command}`: {run.seconds:.0f} s, exit {run.returncode}"
        + (f", ended {run.finished}" if run.finished else "")
        + (
            f", load average {run.load_start:.1f} at its start"
            if run.load_start is not None
            else ""
        )
    )
    lines.append("")
    if run.result is None:
        tail = run.error.strip().splitlines()[-12:]
        return [*lines, "No result (the bench ended with an error):", "", "```",
                *tail, "```", ""]  # fmt: skip
    lines += figure_table(run.result.figures)
    lines.append("")
    lines += [f"- {note}" for note in run.result.notes]
    if run.result.series:
        names = ", ".join(f"`{name}`" for name in sorted(run.result.series))
        lines.append(f"- Series (plotted below when their kind is known): {names}")
    lines.append("")
    return lines


INTRO = (
    "Generated by `make bench` (`python -m bench.report`) from the results in "
    "`docs/perf/results/`; do not edit by hand. Every goal is stated as a ratio to a baseline "
    "measured in the same run where it can be; each figure is repeated and shown as min / "
    "**median** / max; the suite fails only when a gated median misses its target (or a bench "
    "ends without a result)."
)


def verdict_section(runs: Sequence[BenchRun]) -> list[str]:
    """What failed the suite, what ended in an error, what is not there yet."""
    missed = failures(runs)
    errored = [run for run in runs if run.status == "error"]
    absent = [run for run in runs if run.status == "absent"]
    lines = [] if missed or errored else ["Every gated median met its target."]
    lines += [
        f"- **{figure.goal or name}** `{name}` {figure.name}: median {number(figure.median)} "
        f"{figure.unit}, target {target_text(figure)}"
        for name, figure in missed
    ]
    lines += [f"- `{run.module}` ended with an error (exit {run.returncode})" for run in errored]
    if absent:
        lines.append("- Not in the tree yet: " + ", ".join(f"`{r.module}`" for r in absent))
    return lines


def extras_section(report: Report) -> list[str]:
    """Plots, flame graphs, the ThingsBoard side by side and the scale table."""
    lines = ["## Plots", ""]
    if report.plots:
        lines += [f"![{title}]({path})\n" for title, path in report.plots]
    else:
        lines.append("No bench gave a series to plot in this run.")
    lines += ["", "## Flame graphs", ""]
    lines += [f"- [{path.rsplit('/', 1)[-1]}]({path})" for path in report.flames] or [
        "None in docs/perf/ yet."
    ]
    lines += ["", "## Side by side with ThingsBoard IoT Gateway", ""]
    peer = next((r for r in report.runs if r.module == "bench.peers.thingsboard"), None)
    if report.peer is not None:
        lines.append(report.peer.rstrip())
    elif peer is not None and peer.result is not None:
        lines += figure_table(peer.result.figures)
    else:
        lines.append("`bench.peers.thingsboard` gave no result in this run.")
    lines += ["", "## Scale: collectors, partitions and brokers for a province", ""]
    lines.append(
        report.capacity.rstrip()
        if report.capacity is not None
        else "`bench.capacity` is not in the tree yet (the report reads its table when it is)."
    )
    return [*lines, ""]


def render(report: Report) -> str:
    """The whole docs/performance.md."""
    runs = report.runs
    lines = ["# Performance", "", INTRO, "", "## Verdict", "", *verdict_section(runs)]
    lines += ["", "## Goals G1-G10", "", *goal_table(runs), "", "## Machine", ""]
    lines += machine_section(report.machine)
    lines += [f"- {note}" for note in report.notes]
    lines += ["", *extras_section(report), "## Benches", ""]
    for run in runs:
        lines += bench_section(run)
    return "\n".join(lines).rstrip() + "\n"
