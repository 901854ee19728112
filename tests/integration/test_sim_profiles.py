"""Site simulator profiles over real Modbus TCP: plausible values that move, seeded repeats."""

from __future__ import annotations

import asyncio
import json
import random
from typing import TYPE_CHECKING

import pytest

from drivers.base import Quality
from drivers.modbus.codec import DataType, Table
from drivers.modbus.plan import RegisterPoint
from drivers.modbus.tcp import ModbusTcpDriver
from simulators.profiles import PROFILE_NAMES, PROFILES, profile_map, serve_profile
from simulators.profiles.base import SiteModel, register_images
from simulators.tankfarm import SimPoint
from specs.catalogue import default_catalogue
from tests.support.connected import connected
from tests.support.sim_cli import serving, sigterm, simulator

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

HOST = "127.0.0.1"
NEW_PROFILES = sorted(PROFILES)


async def _read(port: int, points: Sequence[SimPoint]) -> dict[str, float]:
    """Read every point once; return engineering values (raw * scale) by key."""
    driver = ModbusTcpDriver("sim", HOST, port, 1, [s.point for s in points], timeout=2.0)
    async with connected(driver):
        samples = await driver.read()
    by_key = {s.point.key: s for s in points}
    values: dict[str, float] = {}
    for sample in samples:
        assert sample.quality is Quality.GOOD, sample
        assert sample.value is not None
        values[sample.key] = sample.value * by_key[sample.key].scale
    return values


def _moving(points: Sequence[SimPoint]) -> list[SimPoint]:
    return [s for s in points if s.expected is None]


@pytest.mark.parametrize("name", NEW_PROFILES)
async def test_served_values_are_plausible_and_move(name: str) -> None:
    points = profile_map(name)
    catalogue = default_catalogue()
    async with await serve_profile(name, HOST, 0, seed=3, interval=0.05) as sim:
        first = await _read(sim.port, points)
        later: list[dict[str, float]] = []
        for _ in range(4):
            await asyncio.sleep(0.3)
            later.append(await _read(sim.port, points))
        assert sim.request_count > 0
    for values in (first, *later):
        assert set(values) == {s.point.key for s in points}
        for sim_point in points:
            value = values[sim_point.point.key]
            if sim_point.expected is not None:
                assert value == pytest.approx(sim_point.expected), sim_point.point.key
                continue
            assert sim_point.low is not None
            assert sim_point.high is not None
            assert sim_point.low <= value <= sim_point.high, (sim_point.point.key, value)
            indicator = catalogue.get(sim_point.quota)
            assert indicator is not None
            assert indicator.plausible(value), (sim_point.point.key, value)
    moved = [
        s.point.key
        for s in _moving(points)
        if any(values[s.point.key] != first[s.point.key] for values in later)
    ]
    # Counters and daily rain totals may sit still for a second; most values may not.
    assert len(moved) >= len(_moving(points)) // 2, moved


@pytest.mark.parametrize("name", NEW_PROFILES)
async def test_same_seed_serves_the_same_registers(name: str) -> None:
    points = profile_map(name)
    reads: list[dict[str, float]] = []
    for seed in (11, 11, 12):
        # A long interval: the read sees the starting state, tick 0.
        async with await serve_profile(name, HOST, 0, seed=seed, interval=3600) as sim:
            reads.append(await _read(sim.port, points))
    assert reads[0] == reads[1]
    assert reads[0] != reads[2]


def _run(name: str, seed: int, ticks: int, dt: float) -> list[Mapping[str, float]]:
    rng = random.Random(seed)
    model: SiteModel = PROFILES[name].start(rng)
    seen = [model.observe(rng)]
    for _ in range(ticks):
        model = model.step(dt, rng)
        seen.append(model.observe(rng))
    return seen


@pytest.mark.parametrize("name", NEW_PROFILES)
def test_model_runs_repeat_and_stay_in_range_for_hours(name: str) -> None:
    points = PROFILES[name].points
    run = _run(name, 5, ticks=3 * 3600, dt=1.0)  # three wall-clock hours
    assert run[:50] == _run(name, 5, ticks=49, dt=1.0)
    for values in run[::60]:
        register_images(points, values)  # every value fits its register type
    for sim_point in _moving(points):
        series = [values[sim_point.point.key] for values in run]
        assert sim_point.low is not None
        assert sim_point.high is not None
        assert sim_point.low <= min(series), sim_point.point.key
        assert max(series) <= sim_point.high, sim_point.point.key
        assert max(series) > min(series), f"{sim_point.point.key} never moves"


def test_fireworks_sometimes_overstaffed_overloaded_and_overtime() -> None:
    run = _run("fireworks", 2, ticks=3600, dt=1.0)
    for n in range(1, 5):
        w = f"workshop{n}"
        staffed = [v[f"{w}.headcount"] > v[f"{w}.rated"] for v in run]
        loaded = [v[f"{w}.quantity"] > v[f"{w}.approved"] for v in run]
        overtime = [v[f"{w}.duration"] > 480 for v in run]
        for flags in (staffed, loaded, overtime):
            assert 0 < sum(flags) < len(run) / 4, w


def test_coal_methane_mostly_low_with_rises_past_one_percent() -> None:
    run = _run("coalmine", 1, ticks=3600, dt=1.0)
    face = [v["000001-001046"] for v in run]
    assert sum(0.1 <= x <= 0.7 for x in face) > 0.8 * len(face)
    assert any(x > 1.0 for x in face)
    assert sum(x >= 1.0 for x in face) < 0.15 * len(face)
    assert any(v["000001-001049"] >= 24 for v in run), "CO rises past its alarm now and then"


def test_slope_creeps_and_sometimes_accelerates() -> None:
    run = _run("slope", 4, ticks=3 * 3600, dt=1.0)
    # One simulated day is 1440 wall seconds; daily displacement of GNSS 1 horizontally.
    daily = [
        abs(run[i + 1440]["gnss1.x"] - run[i]["gnss1.x"]) for i in range(0, len(run) - 1440, 60)
    ]
    assert min(daily) < 10.0, "calm creep stays below the 10 mm/d reference"
    assert max(daily) > 10.0, "an acceleration passes the 10 mm/d reference"


def test_register_map_covers_its_domain_without_overlap() -> None:
    catalogue = default_catalogue()
    for name in NEW_PROFILES:
        points = profile_map(name)
        assert len({s.point.key for s in points}) == len(points)
        used: dict[tuple[Table, int], str] = {}
        for s in points:
            indicator = catalogue.get(s.quota)
            assert indicator is not None
            assert indicator.domain == PROFILES[name].domain
            for address in range(s.point.start, s.point.end):
                assert (s.point.table, address) not in used, (s.point.key, name)
                used[(s.point.table, address)] = s.point.key


async def test_addresses_past_the_map_are_refused() -> None:
    points = profile_map("coalmine")
    end = max(s.point.end for s in points)
    beyond = RegisterPoint("beyond", Table.HOLDING, end + 100, DataType.UINT16)
    async with await serve_profile("coalmine", HOST, 0, seed=1) as sim:
        driver = ModbusTcpDriver("sim", HOST, sim.port, 1, [beyond], timeout=2.0)
        async with connected(driver):
            (sample,) = await driver.read()
    assert sample.quality is Quality.BAD
    assert sample.error is not None
    assert "ILLEGAL DATA ADDRESS" in sample.error


async def test_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        await serve_profile("sewage", HOST, 0)


async def test_cli_prints_each_profile_map() -> None:
    for name in PROFILE_NAMES:
        proc = await simulator("--profile", name, "--map", stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        assert proc.returncode == 0
        rows = [json.loads(line) for line in out.decode().splitlines()]
        assert [row["key"] for row in rows] == [s.point.key for s in profile_map(name)]
        if name in PROFILES:
            assert [row["quota"] for row in rows] == [s.quota for s in profile_map(name)]
            assert [row["scale"] for row in rows] == [s.scale for s in profile_map(name)]


async def test_cli_serves_a_profile_until_sigterm() -> None:
    args = ("--profile", "slope", "--port", "0", "--interval", "0.05")
    async with serving(*args, banner=r"slope: on [\d.]+:(\d+)") as served:
        values = await _read(served.port, profile_map("slope"))
        assert len(values) == len(profile_map("slope"))
        assert "slope stopped" in await sigterm(served.process)
