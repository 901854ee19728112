"""bench/capacity.py: sizing from per-core figures, and reading them from bench/load.py's result."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.capacity import (
    NATION,
    PROVINCE,
    Headroom,
    PerCore,
    Region,
    markdown_table,
    per_core_from_result,
    size,
)
from bench.load_report import RunFigures, WindowFigures, build_result, collector_cost_fit

FIGURES = PerCore(
    collector_readings_per_cpu_s=20_000.0,
    broker_messages_per_cpu_s=10_000.0,
    postgres_cpu_s_per_reading=20e-6,
    stored_bytes_per_reading=400.0,
    wire_bytes_per_reading=150.0,
    wire_bytes_per_reading_compressed=10.0,
    ack_wire_bytes=400.0,
    readings_per_block=100,
)


def test_province_by_hand() -> None:
    s = size(FIGURES, PROVINCE, Headroom())
    assert s.readings_per_s == 500_000
    assert s.blocks_per_s == 5_000
    assert s.broker_messages_per_s == 10_000
    assert s.collector_cores == pytest.approx(50.0)  # 500k / 20k / 0.5
    assert s.collector_processes == 51  # + one spare
    assert s.broker_cores == pytest.approx(2.0)  # 10k / 10k / 0.5
    assert s.broker_nodes == 3
    assert s.postgres_cores == pytest.approx(20.0)  # 500k x 20 µs / 0.5
    assert s.rows_per_day == 500_000 * 86_400
    assert s.stored_bytes_per_day == pytest.approx(500_000 * 86_400 * 400)
    assert s.stored_bytes_retained == pytest.approx(500_000 * 86_400 * 400 * 30 * 1.25)
    assert s.rows_per_partition == pytest.approx(500_000 * 3_600)
    assert s.hot_index_bytes == 500_000 * 8192
    # (500k x 150 B + 5k ACKs x 400 B) x 8 bit / 0.5
    assert s.ingress_bits_per_s == pytest.approx((75e6 + 2e6) * 8 / 0.5)
    assert s.ingress_bits_per_s_compressed == pytest.approx((5e6 + 2e6) * 8 / 0.5)


def test_a_busier_target_utilisation_needs_fewer_cores() -> None:
    relaxed = size(FIGURES, PROVINCE, Headroom(cpu_utilisation=1.0, spare=0))
    assert relaxed.collector_cores == pytest.approx(25.0)
    assert relaxed.collector_processes == 25


@given(
    enterprises=st.integers(1, 10**6),
    points=st.integers(1, 1_000),
    scale=st.integers(2, 40),
)
def test_sizing_grows_linearly_with_enterprises(enterprises: int, points: int, scale: int) -> None:
    small = size(FIGURES, Region("a", enterprises, points))
    large = size(FIGURES, Region("b", enterprises * scale, points))
    assert large.readings_per_s == pytest.approx(small.readings_per_s * scale)
    assert large.collector_cores == pytest.approx(small.collector_cores * scale)
    assert large.broker_cores == pytest.approx(small.broker_cores * scale)
    assert large.collector_processes >= small.collector_processes
    assert large.broker_nodes - 1 <= scale * (small.broker_nodes - 1)
    assert math.isclose(large.stored_bytes_per_day, small.stored_bytes_per_day * scale)


def test_nation_is_thirty_provinces() -> None:
    province, nation = size(FIGURES, PROVINCE), size(FIGURES, NATION)
    assert nation.readings_per_s == 30 * province.readings_per_s


def test_markdown_table_has_both_regions_and_every_row() -> None:
    table = markdown_table(FIGURES).splitlines()
    assert table[0].startswith("| | province (5,000 x 100 points at 1 s) | nation (150,000 x 100)")
    assert table[1] == "|---|---:|---:|"
    assert "| readings/s | 500,000 | 15,000,000 |" in table
    assert "| collector processes (+1 spare) | 51 | 1501 |" in table
    assert all(line.count("|") == 4 for line in table)


def _run(backend: str, phase: str) -> RunFigures:
    window = WindowFigures(
        seconds=10.0, readings=200_000, blocks=2_000, messages=4_000, collectors_cpu=8.0,
        broker_cpu=0.4, postgres_cpu=3.0, loadgen_cpu_per_block=1e-4, latency_p50=0.05,
        latency_p99=0.2, machine_busy=0.7,
    )  # fmt: skip
    return RunFigures(
        backend=backend, phase=phase, gateways=200, points=100, interval=1.0, collectors=2,
        windows=(window, window, window), sealed_readings=700_000, stored_readings=700_000,
        sealed_blocks=7_000, stored_blocks=7_000, resends=0, unacked_blocks=0,
        wire_bytes=105_000_000, zlib_bytes_per_reading=10.0, ack_bytes_mean=420.0,
        readings_table_bytes=189_000_000, database_growth_bytes=308_000_000,
        seal_lag_max=0.01, latency_p50=0.05, latency_p99=0.2, latency_max=0.3,
    )  # fmt: skip


def test_per_core_figures_are_read_back_from_the_load_bench_result() -> None:
    result = build_result([_run("sqlite", "blocks"), _run("postgresql", "blocks")], 6_000.0, 2)
    per_core = per_core_from_result(result)
    assert per_core.postgres_cpu_s_per_reading == pytest.approx(15e-6)  # 3 CPU-s / 200k
    assert per_core == PerCore(
        collector_readings_per_cpu_s=25_000.0,  # 200k readings / 8 CPU-s
        broker_messages_per_cpu_s=10_000.0,  # 4k messages / 0.4 CPU-s
        postgres_cpu_s_per_reading=per_core.postgres_cpu_s_per_reading,
        stored_bytes_per_reading=440.0,
        wire_bytes_per_reading=150.0,
        wire_bytes_per_reading_compressed=10.0,
        ack_wire_bytes=420.0,
        readings_per_block=100,
    )
    assert not result.failed


def test_a_lost_reading_fails_the_load_bench() -> None:
    run = _run("postgresql", "fleet")
    lossy = RunFigures(**{**run.__dict__, "stored_readings": run.sealed_readings - 1})
    failed = build_result([lossy], 6_000.0, 2).failed
    assert [f.name for f in failed] == [
        "postgresql/fleet: readings not stored after the drain (sealed - stored)"
    ]


def test_collector_cost_fit_splits_per_block_and_per_reading_cost() -> None:
    # CPU per block = 1 ms + n x 20 µs: 10-reading blocks 1.2 ms, 100-reading blocks 3 ms.
    def run(points: int, cpu_per_block: float) -> RunFigures:
        base = _run("postgresql", "fleet")
        window = WindowFigures(
            **{
                **base.windows[0].__dict__,
                "readings": 1000 * points,
                "collectors_cpu": 1000 * cpu_per_block,
            }
        )
        return RunFigures(**{**base.__dict__, "points": points, "windows": (window,)})

    per_block, per_reading = collector_cost_fit(run(10, 1.2e-3), run(100, 3.0e-3))
    assert per_block == pytest.approx(1e-3)
    assert per_reading == pytest.approx(20e-6)
