"""The ThingsBoard side-by-side bench's pure parts: the loss estimate and the report table.

No gateway runs here (bench/peers/thingsboard.py does that); these pin how a series of
reading times becomes "readings lost" and how the result becomes the report's table.
"""

from __future__ import annotations

import random

from bench.peers.probe import shortfall
from bench.peers.tb_report import RunFigures, figures_of, side_by_side_markdown
from bench.results import BenchResult

STEADY = (0.0, 40.0)


def grid(start: float, stop: float, skip: tuple[float, float] = (0.0, 0.0)) -> list[float]:
    """One reading a second from `start` (not at `stop`), none in [skip[0], skip[1])."""
    times = [start + k for k in range(int(stop - start))]
    return [t for t in times if not skip[0] <= t < skip[1]]


def test_a_regular_series_without_a_hole_misses_nothing_whatever_the_window() -> None:
    series = [grid(0.37, 120.0)]
    for window in ((50.0, 80.0), (50.5, 80.2), (41.0, 119.0)):
        assert shortfall(series, STEADY, window).missing == 0


def test_a_regular_series_misses_exactly_the_readings_of_its_hole() -> None:
    series = [grid(0.37, 120.0, skip=(60.0, 90.0))] * 100  # a device: 100 points polled together
    assert shortfall(series, STEADY, (60.0, 90.0)).missing == 30 * 100
    # A hole across the window's edge counts whole: the span runs reading to reading.
    assert shortfall(series, STEADY, (70.0, 95.0)).missing == 30 * 100


def test_a_point_silent_to_the_end_misses_what_was_due_in_the_window() -> None:
    series = [grid(0.0, 70.0)]  # last reading at 69 s
    assert shortfall(series, STEADY, (60.0, 80.0)).missing == 10  # 70..79 due, 80 not


def test_late_stamps_are_not_losses() -> None:
    # ThingsBoard's polls are queued each second and stamped when served: 0.1-2.5 s apart.
    rng = random.Random(7)
    series = []
    for _ in range(10):
        base = grid(rng.random(), 200.0)
        series.append(sorted(t + rng.uniform(0.0, 1.4) for t in base))
    lost = shortfall(series, (0.0, 100.0), (110.0, 150.0)).missing
    assert abs(lost) <= len(series)  # good to about a reading per series


def _run(**figures: float) -> RunFigures:
    values = {
        "cpu_pct": 10.0,
        "rss_peak_mib": 70.0,
        "rss_steady_mib": 68.0,
        "readings_per_s": 1000.0,
        "bytes_per_reading": 20.0,
        "lost": 0,
        "expected_in_outage_window": 40_000.0,
        "baseline_shortfall": 0,
        "reconnected_after_s": 20.0,
    } | figures
    return RunFigures(
        **values,  # type: ignore[arg-type]
        unstored=(100_000, 0),
        timeline=[[0.0, 1000.0]],
    )


def test_the_table_has_both_sides_and_the_ratio_and_only_our_loss_gates() -> None:
    tb = [_run(cpu_pct=18.0), _run(cpu_pct=20.0)]
    ours = [_run(cpu_pct=3.6, bytes_per_reading=6.0), _run(cpu_pct=4.0, bytes_per_reading=6.0)]
    result = BenchResult("peers.thingsboard", figures_of(tb, ours), notes=("TB 3.8.5",))
    assert {f.name for f in result.figures if f.gated} == {"ours readings sealed and never stored"}
    assert result.failed == ()
    table = side_by_side_markdown(result)
    assert "| CPU, % of a core | 19.0 (18.0 to 20.0) | 3.8 (3.6 to 4.0) | 0.20 |" in table
    assert "| bytes per reading on the wire | 20.0 | 6.0 | 0.30 |" in table
    assert "- TB 3.8.5" in table


def test_a_reading_sealed_and_never_stored_fails_the_bench() -> None:
    ours = [_run()]
    ours[0] = RunFigures(**{**ours[0].__dict__, "unstored": (100_000, 3)})
    result = BenchResult("peers.thingsboard", figures_of([_run()], ours))
    assert [f.name for f in result.failed] == ["ours readings sealed and never stored"]
