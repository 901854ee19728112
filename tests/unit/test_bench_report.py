"""docs/performance.md from fixture results: the verdict, the G-table and the suite's exit code.

The report is a pure function of the results (bench/report_render.py); plots are drawn from
series by kind (bench/report_plots.py). No bench runs here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bench.report import Job, keep_options, load_run, save_record
from bench.report_plots import draw_all, gather, percentile_curve
from bench.report_render import (
    BenchRun,
    Machine,
    Report,
    exit_code,
    failures,
    number,
    render,
    verdict,
)
from bench.results import (
    LATENCY_PERCENTILES,
    RSS_OVER_TIME,
    BenchResult,
    Figure,
    read_result,
    series_name,
    write_result,
)

MACHINE = Machine(
    started="2026-12-06 08:00 UTC", commit="abc1234", cpu="Test CPU", cores=2, memory_gib=24.0,
    python="3.11.7", sqlite="3.40.1", mosquitto="2.0.11", postgresql="15.8",
    load_start=(0.5, 0.4, 0.3), load_end=(1.5, 1.0, 0.5),
)  # fmt: skip


def figure(goal: str, name: str, values: tuple[float, ...], **kw: object) -> Figure:
    return Figure(goal, name, kw.pop("unit", "x"), values, **kw)  # type: ignore[arg-type]


def run(name: str, *figures: Figure, returncode: int | None = 0, **kw: object) -> BenchRun:
    result = BenchResult(name, figures, **kw)  # type: ignore[arg-type]
    return BenchRun(name, f"bench.{name}", ("--repeats", "3"), 12.0, returncode, result)


def assert_on_page(page: str, *parts: str) -> None:
    """Every part is on the page; the message lists the ones that are not."""
    missing = [part for part in parts if part not in page]
    assert not missing, missing


def test_a_median_decides_not_the_worst_repeat() -> None:
    ok = figure("G10", "ratio", (0.5, 0.95, 0.97), target=0.9)
    low = figure("G1", "agent/raw", (0.3, 0.4, 0.9), target=0.5)
    assert ok.met is True
    assert low.met is False
    runs = [run("rtu", ok), run("throughput", low, returncode=1)]
    assert failures(runs) == [("throughput", low)]
    assert exit_code(runs) == 1
    assert exit_code(runs[:1]) == 0


def test_at_most_targets_and_figures_without_a_target() -> None:
    rss = figure("G7", "peak RSS", (61.0, 59.0, 58.0), target=60, direction="at_most")
    record = figure("", "verify/s", (9000.0,))
    assert rss.met is True
    assert record.met is None
    assert exit_code([run("memory", rss, record)]) == 0
    assert verdict(record) == "for the record"


def test_an_ungated_miss_is_reported_with_its_reason_and_fails_nothing() -> None:
    scaling = figure("G4", "two over one", (0.9, 1.0, 1.1), target=1.7, gated=False, note="2 cores")
    runs = [run("collector", scaling)]
    assert exit_code(runs) == 0
    assert verdict(scaling) == "missed, not gated: 2 cores"
    page = render(Report(tuple(runs), MACHINE))
    assert "missed, not gated: 2 cores" in page
    assert "Every gated median met its target." in page


def test_a_bench_without_a_result_fails_the_suite_and_an_absent_one_does_not() -> None:
    crashed = BenchRun("replay", "bench.replay", (), 3.0, 2, None, "Traceback ...\nKeyError: 1")
    absent = BenchRun("wire", "bench.wire", present=False)
    not_run = BenchRun("memory-soak", "bench.memory", how_to_run="`make bench-soak`")
    assert [r.status for r in (crashed, absent, not_run)] == ["error", "absent", "not run"]
    assert exit_code([absent, not_run]) == 0
    assert exit_code([crashed]) == 1
    page = render(Report((crashed, absent, not_run), MACHINE))
    assert_on_page(
        page,
        "`bench.replay` ended with an error (exit 2)",
        "KeyError: 1",
        "Not in the tree yet: `bench.wire`",
        "Not run: `make bench-soak`.",
        "| G9 |",
        "not measured: `bench.wire` not in the tree yet",
    )


def test_the_goal_table_shows_min_median_max_target_baseline_and_verdict() -> None:
    g3 = figure(
        "G3", "ingest over verify", (4.5, 5.2, 6.0), target=5,
        baseline="Ed25519 verifies per CPU-second, same repeat",
    )  # fmt: skip
    g7 = figure("G7", "peak RSS, modbus-1000", (75.0, 76.0, 80.0), unit="MiB", target=60,
                direction="at_most")  # fmt: skip
    page = render(Report((run("collector", g3), run("memory", g7, returncode=1)), MACHINE))
    rows = [line for line in page.splitlines() if line.startswith("| G3 |")]
    assert len(rows) == 1
    assert "ingest over verify: 4.5 / **5.2** / 6 x" in rows[0]
    assert "≥ 5" in rows[0]
    assert "Ed25519 verifies per CPU-second, same repeat" in rows[0]
    assert rows[0].endswith("| met |")
    g7_row = next(line for line in page.splitlines() if line.startswith("| G7 |"))
    assert "≤ 60" in g7_row
    assert g7_row.endswith("| **MISSED** |")
    assert "- **G7** `memory` peak RSS, modbus-1000: median 76 MiB, target ≤ 60" in page
    # Every goal has a row, measured or not.
    for n in range(1, 11):
        assert f"| G{n} |" in page


def test_machine_facts_hooks_and_links_are_on_the_page() -> None:
    page = render(
        Report(
            (run("rtu", figure("G10", "ratio", (0.96,), target=0.9)),),
            MACHINE,
            plots=(("Latency percentiles", "perf/latency-percentiles.png"),),
            flames=("perf/agent-pipeline.svg",),
            capacity="| processes | 12 |",
            peer="| | ours | ThingsBoard |",
        )
    )
    assert_on_page(
        page,
        "Test CPU, 2 cores",
        "SQLite 3.40.1; Mosquitto 2.0.11; PostgreSQL 15.8",
        "0.50 / 0.40 / 0.30",
        "![Latency percentiles](perf/latency-percentiles.png)",
        "[agent-pipeline.svg](perf/agent-pipeline.svg)",
        "| processes | 12 |",
        "| | ours | ThingsBoard |",
        "0.96 (1 run)",
    )


def test_the_page_is_a_function_of_the_results() -> None:
    report = Report((run("rtu", figure("G10", "ratio", (0.9, 1.0, 0.95), target=0.9)),), MACHINE)
    assert render(report) == render(report)


@pytest.mark.parametrize(
    ("value", "text"),
    [(123456.7, "123,457"), (0.25, "0.25"), (5.0, "5"), (0.001234, "0.0012"), (61.25, "61.2")],
)
def test_numbers_read_as_people_read_them(value: float, text: str) -> None:
    assert number(value) == text


def test_results_round_trip_through_json(tmp_path: Path) -> None:
    result = BenchResult(
        "memory",
        (figure("G7", "peak", (1.0, 2.0, 3.0), target=2, direction="at_most", note="n"),),
        series={series_name(RSS_OVER_TIME, "soak"): [[0.0, 70.0], [10.0, 70.5]]},
        notes=("a note",),
    )
    path = tmp_path / "memory.json"
    write_result(path, result)
    assert read_result(path) == result


def test_a_figure_needs_a_value() -> None:
    with pytest.raises(ValueError, match="no values"):
        figure("G1", "empty", ())


def test_plots_are_drawn_by_series_kind(tmp_path: Path) -> None:
    memory = run(
        "memory",
        figure("G7", "peak", (70.0,)),
        series={
            series_name(RSS_OVER_TIME, "modbus-1000"): [[0.0, 70.0], [0.5, 70.2], [1.0, 70.1]],
            "odd": [[1.0, 2.0]],
        },
    )
    latency = run(
        "latency",
        figure("G6", "p99", (240.0,)),
        series={series_name(LATENCY_PERCENTILES, "modbus"): [[50, 120.0], [99, 240.0]]},
    )
    kinds = gather([memory, latency])
    assert set(kinds) == {RSS_OVER_TIME, LATENCY_PERCENTILES, "memory"}
    assert kinds[RSS_OVER_TIME][0][0] == "modbus-1000 (memory)"
    drawn = draw_all([memory, latency], tmp_path)
    assert [name for _, name in drawn] == [
        "latency-percentiles.png",
        "rss-over-time.png",
        "series-memory.png",
    ]
    for _, name in drawn:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_latency_series_named_before_the_kinds_are_plotted_as_percentiles() -> None:
    latency = run(
        "latency",
        figure("G6", "p99", (0.24,)),
        series={"opcua latency percentiles": [[50, 0.12], [99, 0.24]]},
    )
    replay = run(
        "replay",
        figure("G5", "ratio", (1.5,)),
        series={"live_latency_drain_ms": [[i, float(v)] for i, v in enumerate(range(100, 0, -1))]},
    )
    lines = dict(gather([latency, replay])[LATENCY_PERCENTILES])
    assert lines["opcua (latency)"] == [[50, 120.0], [99, 240.0]]
    curve = lines["live, drain (replay)"]
    assert curve[0] == [0, 1.0]
    assert curve[50][1] in (50.0, 51.0)
    assert curve[100] == [100, 100.0]


def test_percentile_curve_by_nearest_rank() -> None:
    assert percentile_curve([]) == []
    curve = percentile_curve([3.0, 1.0, 2.0])
    assert [curve[0], curve[50], curve[100]] == [[0, 1.0], [50, 2.0], [100, 3.0]]


def test_options_a_bench_does_not_take_are_left_out_with_their_values() -> None:
    help_text = "usage: x [-h] [--repeats REPEATS] [--json JSON]\n  --seconds, -s SECONDS\n"
    kept = keep_options(("--repeats", "1", "--backlog", "200000", "--seconds", "5"), help_text)
    assert kept == ("--repeats", "1", "--seconds", "5")


def test_a_run_is_read_back_as_it_was_recorded(tmp_path: Path) -> None:
    job = Job("rtu", "bench.rtu", how_to_run="now")
    recorded = dataclasses.replace(
        run("rtu", figure("G10", "ratio", (0.95,), target=0.9)), load_start=3.2
    )
    save_record(tmp_path, recorded)
    assert recorded.result is not None
    write_result(tmp_path / "rtu.json", recorded.result)
    assert load_run(job, tmp_path) == dataclasses.replace(recorded, how_to_run="now")
    assert load_run(Job("soak", "bench.rtu", how_to_run="later"), tmp_path).status == "not run"
    assert load_run(Job("x", "bench.not_a_bench"), tmp_path).status == "absent"


def test_a_soak_gets_a_chart_of_its_own(tmp_path: Path) -> None:
    memory = run(
        "memory-soak",
        figure("G7", "growth", (0.06,)),
        series={
            series_name(RSS_OVER_TIME, "modbus-1000, 30-minute soak"): [[0, 77.3], [1800, 77.4]]
        },
    )
    assert [name for _, name in draw_all([memory], tmp_path)] == ["rss-soak.png"]
