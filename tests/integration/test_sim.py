"""Tank farm simulator: its map, its model, the in-process server and the command line."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from drivers.base import Quality
from drivers.modbus.codec import DataType, Table
from drivers.modbus.plan import plan_reads
from drivers.modbus.tcp import ModbusTcpDriver
from simulators.tankfarm import (
    initial_tanks,
    pattern_map,
    register_map,
    serve_tankfarm,
    step_tank,
    tank_map,
)
from tests.support.connected import connected
from tests.support.sim_cli import TANK_FARM_BANNER, serving, sigterm, simulator

HOST = "127.0.0.1"


def test_map_keys_are_unique_and_values_do_not_overlap() -> None:
    points = [s.point for s in register_map(4)]
    assert len({p.key for p in points}) == len(points)
    plan_reads(points)  # accepts the whole map
    used: dict[tuple[Table, int], str] = {}
    for p in points:
        if p.dtype is DataType.BOOL and p.bit is not None:
            continue  # status bits share the status word on purpose
        for address in range(p.start, p.end):
            assert (p.table, address) not in used, (p.key, used[(p.table, address)])
            used[(p.table, address)] = p.key


def test_map_describes_every_point() -> None:
    assert len(tank_map(3)) == 15
    for sim in tank_map(3):
        assert sim.unit
        assert sim.low is not None
        assert sim.high is not None
        assert sim.expected is None
    assert all(s.expected is not None for s in pattern_map())


def test_same_seed_same_tanks() -> None:
    assert initial_tanks(3, random.Random(5)) == initial_tanks(3, random.Random(5))
    assert initial_tanks(3, random.Random(5)) != initial_tanks(3, random.Random(6))


def test_model_stays_in_range_moves_and_spikes() -> None:
    rng = random.Random(11)
    states = initial_tanks(3, rng)
    bounds = {s.point.key.split(".")[1]: (s.low, s.high) for s in tank_map(1)}
    seen: dict[str, list[float]] = {name: [] for name in bounds}
    dt = 0.2
    for tick in range(1, 3001):  # ten simulated minutes
        states = tuple(step_tank(s, tick * dt, dt, rng) for s in states)
        for s in states:
            for name in bounds:
                seen[name].append(getattr(s, name))
    for name, (low, high) in bounds.items():
        assert low is not None
        assert high is not None
        assert low <= min(seen[name])
        assert max(seen[name]) <= high
    assert max(seen["level"]) - min(seen["level"]) > 2.0
    assert max(seen["temperature"]) - min(seen["temperature"]) > 10.0
    # Gas sits near 0..5 most of the time and spikes now and then.
    for gas in ("lel", "h2s"):
        quiet = sorted(seen[gas])[len(seen[gas]) // 2]
        assert quiet < 5.0
        assert max(seen[gas]) > 8.0


async def test_served_tanks_read_in_range_and_move() -> None:
    async with await serve_tankfarm(HOST, 0, tanks=2, seed=3, interval=0.05) as farm:
        bounds = {s.point.key: (s.low, s.high) for s in tank_map(2)}
        driver = ModbusTcpDriver("farm", HOST, farm.port, 1, [s.point for s in tank_map(2)])
        async with connected(driver):
            first = await driver.read()
            await asyncio.sleep(0.3)
            second = await driver.read()
    for sample in first + second:
        low, high = bounds[sample.key]
        assert sample.quality is Quality.GOOD
        assert sample.value is not None
        assert low is not None
        assert high is not None
        assert low <= sample.value <= high
    assert {s.key: s.value for s in first} != {s.key: s.value for s in second}


async def test_busy_port_raises_oserror() -> None:
    async with await serve_tankfarm(HOST, 0, tanks=1) as farm:
        with pytest.raises(OSError, match="cannot listen"):
            await serve_tankfarm(HOST, farm.port, tanks=1)


async def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="tank"):
        await serve_tankfarm(HOST, 0, tanks=0)


async def test_cli_serves_until_sigterm() -> None:
    args = ("--port", "0", "--tanks", "1", "--interval", "0.05")
    async with serving(*args, banner=TANK_FARM_BANNER) as served:
        driver = ModbusTcpDriver("cli", HOST, served.port, 1, [s.point for s in tank_map(1)])
        async with connected(driver):
            samples = await driver.read()
        assert all(s.quality is Quality.GOOD for s in samples)
        assert "tank farm stopped" in await sigterm(served.process)


async def test_cli_prints_the_map() -> None:
    proc = await simulator("--map", "--tanks", "2", stdout=asyncio.subprocess.PIPE)
    async with asyncio.timeout(15):
        out, _ = await proc.communicate()
    assert proc.returncode == 0
    rows = [json.loads(line) for line in out.decode().splitlines()]
    assert [r["key"] for r in rows] == [s.point.key for s in register_map(2)]
    assert rows[0] == {
        "key": "tank1.level",
        "table": "holding",
        "start": 0,
        "type": "float32",
        "byte_order": "big",
        "word_order": "big",
        "bit": None,
        "unit": "m",
        "description": "tank 1 level",
        "expected": None,
        "low": 0.0,
        "high": 10.0,
    }
