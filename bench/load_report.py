"""bench/load.py's figures: what one window and one run measured, as a `BenchResult` (pure).

Figure names are `<backend>/<phase>: <what>` (backend `sqlite` or `postgresql`, phase `fleet`
or `blocks`); bench/capacity.py reads them back by these names.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.results import BenchResult, Figure

TARGET_P99_S = 2.0
TICK = 0.01  # /proc CPU times are in clock ticks: a window with none is counted as one
LATENCY_NOT_GATED = (
    "not gated (--gate-latency gates it): when other work leaves the run less CPU than it"
    " offers (machine busy ~100 %, the latest seal long after its second), p99 measures that"
    " queue, not the collector"
)
UNSATURATED = (
    "not gated: at 1 s the collectors are not saturated, so per-core figures carry idle-time"
    " overheads (conservative for sizing); the machine is shared with other work"
)


@dataclass(frozen=True)
class WindowFigures:
    """One measuring window of a run."""

    seconds: float
    readings: int  # acknowledged in the window
    blocks: int
    messages: int  # PUBLISHes through the broker: blocks (and resends) in, ACKs out
    collectors_cpu: float
    broker_cpu: float
    postgres_cpu: float
    loadgen_cpu_per_block: float
    latency_p50: float
    latency_p99: float
    machine_busy: float

    @property
    def readings_per_collector_cpu_s(self) -> float:
        return self.readings / max(self.collectors_cpu, TICK)

    @property
    def messages_per_broker_cpu_s(self) -> float:
        return self.messages / max(self.broker_cpu, TICK)


@dataclass(frozen=True)
class RunFigures:
    """One run (backend x phase): its windows and what it counted once."""

    backend: str
    phase: str
    gateways: int
    points: int
    interval: float
    collectors: int
    windows: tuple[WindowFigures, ...]
    sealed_readings: int
    stored_readings: int
    sealed_blocks: int
    stored_blocks: int
    resends: int
    unacked_blocks: int
    wire_bytes: int
    zlib_bytes_per_reading: float
    ack_bytes_mean: float
    readings_table_bytes: int
    database_growth_bytes: int
    seal_lag_max: float
    latency_p50: float
    latency_p99: float
    latency_max: float

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.phase}"

    @property
    def shape(self) -> str:
        return (
            f"{self.gateways} gateways x {self.points} points, a block every {self.interval:g} s,"
            f" {self.collectors}"
            f" collector(s) on {self.backend}"
        )


def _per_window(
    run: RunFigures, name: str, unit: str, values: Sequence[float], **kw: object
) -> Figure:
    note = str(kw.pop("note", "")) or UNSATURATED
    return Figure(
        goal="11.8", name=f"{run.label}: {name}", unit=unit, values=tuple(values),
        gated=bool(kw.pop("gated", False)), note=f"{run.shape}; {note}", **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def run_figures(run: RunFigures, verify_per_s: float, *, gate_latency: bool) -> list[Figure]:
    """Every figure of one run."""
    w = run.windows
    rate = [x.readings_per_collector_cpu_s for x in w]
    figures = [
        _per_window(run, "collector readings per collector CPU-second", "readings/CPU-s", rate),
        _per_window(
            run,
            "collector readings per CPU-second / Ed25519 verifies per CPU-second",
            "x",
            [r / verify_per_s for r in rate],
            baseline="Ed25519 single verifies per CPU-second, same run",
        ),
        _per_window(
            run,
            "broker messages per Mosquitto CPU-second",
            "messages/CPU-s",
            [x.messages_per_broker_cpu_s for x in w],
        ),
        _per_window(
            run, "broker messages per second", "messages/s", [x.messages / x.seconds for x in w]
        ),
        _per_window(
            run, "readings stored per second", "readings/s", [x.readings / x.seconds for x in w]
        ),
        _per_window(
            run, "load generator CPU per block", "µs", [1e6 * x.loadgen_cpu_per_block for x in w]
        ),
        _per_window(run, "machine busy", "%", [100 * x.machine_busy for x in w]),
        _per_window(
            run,
            "ACK latency p50 (poll to signed ACK)",
            "s",
            [x.latency_p50 for x in w],
            note="whole run: " + f"p50 {run.latency_p50:.3f} s",
        ),
        _per_window(
            run,
            "ACK latency p99 (poll to signed ACK)",
            "s",
            [x.latency_p99 for x in w],
            target=TARGET_P99_S,
            direction="at_most",
            gated=gate_latency,
            note=f"whole run: p99 {run.latency_p99:.3f} s, max {run.latency_max:.3f} s"
            + ("" if gate_latency else "; " + LATENCY_NOT_GATED),
        ),
    ]
    if run.backend == "postgresql":
        figures.append(
            _per_window(
                run,
                "PostgreSQL backend CPU per reading",
                "µs",
                [1e6 * x.postgres_cpu / x.readings for x in w],
                note="backends of the run's database only (WAL writer, checkpointer shared:"
                " a lower bound)",
            )
        )
    once = {
        "readings not stored after the drain (sealed - stored)": max(
            0, run.sealed_readings - run.stored_readings
        ),
        "readings stored twice (stored - sealed)": max(
            0, run.stored_readings - run.sealed_readings
        ),
        "blocks not stored after the drain (sealed - stored)": max(
            0, run.sealed_blocks - run.stored_blocks
        ),
        "blocks unacknowledged after the drain": run.unacked_blocks,
    }
    figures += [
        Figure("11.8", f"{run.label}: {name}", "", (float(v),), target=0.0, direction="at_most",
               note=f"{run.shape}; {run.sealed_readings} readings sealed, {run.stored_readings}"
               f" stored")
        for name, v in once.items()
    ]  # fmt: skip
    stored = max(1, run.stored_readings)
    sizes = {
        "readings per block": (run.points, ""),
        "resends": (run.resends, ""),
        "latest seal after its second (load generator kept up)": (run.seal_lag_max, "s"),
        "bytes per stored reading, readings table with indexes": (
            run.readings_table_bytes / stored, "B"),
        "bytes per stored reading, whole database": (run.database_growth_bytes / stored, "B"),
        "bytes per reading on the wire, raw": (run.wire_bytes / max(1, run.sealed_readings), "B"),
        "bytes per reading on the wire, zlib-6 per block": (run.zlib_bytes_per_reading, "B"),
        "bytes per ACK on the wire": (run.ack_bytes_mean, "B"),
    }  # fmt: skip
    figures += [
        Figure("11.8", f"{run.label}: {name}", unit, (float(v),), gated=False, note=run.shape)
        for name, (v, unit) in sizes.items()
    ]
    return figures


def collector_cost_fit(small: RunFigures, large: RunFigures) -> tuple[float, float]:
    """(CPU-s per block, CPU-s per reading) of the collectors, from two block sizes.

    CPU per block of n readings = a + n b; each run gives one n and its median CPU per block.
    """

    def per_block(run: RunFigures) -> float:
        return run.points / statistics.median(x.readings_per_collector_cpu_s for x in run.windows)

    per_reading = (per_block(large) - per_block(small)) / (large.points - small.points)
    return per_block(small) - small.points * per_reading, per_reading


def _fits(runs: Sequence[RunFigures]) -> list[Figure]:
    figures = []
    for backend in sorted({r.backend for r in runs}):
        by_phase = {r.phase: r for r in runs if r.backend == backend}
        small, large = by_phase.get("fleet"), by_phase.get("blocks")
        if small is None or large is None or small.points == large.points:
            continue
        per_block, per_reading = collector_cost_fit(small, large)
        note = (
            f"CPU per block = a + n b fitted to {small.points}- and {large.points}-reading blocks"
            " (medians); what a block costs whatever its size (verify, ACK, transaction share)"
        )
        figures += [
            Figure("11.8", f"{backend}: collector CPU per block (fit, a)", "µs",
                   (1e6 * per_block,), gated=False, note=note),
            Figure("11.8", f"{backend}: collector CPU per reading (fit, b)", "µs",
                   (1e6 * per_reading,), gated=False, note=note),
        ]  # fmt: skip
    return figures


def build_result(
    runs: Sequence[RunFigures], verify_per_s: float, cores: int, *, gate_latency: bool = False
) -> BenchResult:
    """The bench's result: every run's figures, the verify baseline, latency series."""
    figures = [
        Figure("11.8", "Ed25519 single verifies per CPU-second (baseline)", "verifies/CPU-s",
               (verify_per_s,), gated=False, note="a 10-reading block's bytes, this process")
    ]  # fmt: skip
    for run in runs:
        figures += run_figures(run, verify_per_s, gate_latency=gate_latency)
    figures += _fits(runs)
    series = {
        f"{run.label} readings per collector CPU-second by window": [
            [float(i + 1), x.readings_per_collector_cpu_s] for i, x in enumerate(run.windows)
        ]
        for run in runs
    }
    busy = statistics.median([x.machine_busy for r in runs for x in r.windows] or [0.0])
    notes = (
        f"{cores} cores, shared with other work (median machine busy {100 * busy:.0f} %).",
        "Sizing from these figures: bench/capacity.py, docs/scale.md.",
    )
    return BenchResult(bench="load", figures=tuple(figures), series=series, notes=notes)
