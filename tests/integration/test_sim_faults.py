"""Fault modes of the Modbus TCP simulators, seen through the real Modbus TCP driver."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from typing import TYPE_CHECKING

import pytest

from drivers.base import DriverError, DriverTimeoutError, Quality
from drivers.modbus.tcp import ModbusTcpDriver
from simulators.faults import Fault, FaultInjector, FaultKind
from simulators.profiles import PROFILES, serve_profile
from simulators.tankfarm import serve_tankfarm, tank_map
from tests.support.connected import connected
from tests.support.sim_cli import TANK_FARM_BANNER, serving, sigterm

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from drivers.base import RawSample
    from simulators.profiles import SimServer

HOST = "127.0.0.1"
TIMEOUT = 0.3
TANK_POINTS = [s.point for s in tank_map(1)]  # holding and input registers


def _connected(
    sim: SimServer, profile: str = "tankfarm"
) -> contextlib.AbstractAsyncContextManager[ModbusTcpDriver]:
    """A Modbus TCP driver of `profile`'s points, connected to `sim`; closed on leaving."""
    points = TANK_POINTS if profile == "tankfarm" else [s.point for s in PROFILES[profile].points]
    return connected(ModbusTcpDriver("sim", HOST, sim.port, sim.unit_id, points, timeout=TIMEOUT))


@pytest.fixture
async def farm() -> AsyncIterator[SimServer]:
    async with await serve_tankfarm(HOST, 0, tanks=1, seed=2, interval=0.02) as sim:
        yield sim


def _values(samples: list[RawSample]) -> list[float | None]:
    assert all(s.quality is Quality.GOOD for s in samples), samples
    return [s.value for s in samples]


def test_parse_and_spell_faults() -> None:
    assert Fault.parse("silent") == Fault.silent()
    assert Fault.parse("garbage") == Fault.garbage()
    assert Fault.parse("frozen") == Fault.frozen()
    assert Fault.parse("normal") == Fault.normal() == Fault()
    assert Fault.parse("exception") == Fault.exception(4)
    assert Fault.parse("exception:6") == Fault(FaultKind.EXCEPTION, 6)
    assert str(Fault.exception(11)) == "exception:11"
    assert str(Fault.silent()) == "silent"
    for bad in ("loud", "silent:3", "exception:x", "exception:0", "exception:256"):
        with pytest.raises(ValueError, match=re.escape(repr(bad)) + "|outside"):
            Fault.parse(bad)


def test_garbage_is_never_a_modbus_tcp_frame() -> None:
    injector = FaultInjector(random.Random(1), Fault.garbage())
    reply = bytes.fromhex("0001 0000 0007 01 03 04 0001 0002".replace(" ", ""))
    assert injector.trace_packet(sending=False, packet=reply) == reply  # requests pass untouched
    for _ in range(500):
        junk = injector.trace_packet(sending=True, packet=reply)
        assert len(junk) >= 8
        assert junk[2:4] != b"\x00\x00"  # a real MBAP header has protocol id 0


async def test_silent_server_times_out_then_recovers(farm: SimServer) -> None:
    async with _connected(farm) as driver:
        assert _values(await driver.read())
        farm.set_fault(Fault.silent())
        assert farm.fault == Fault.silent()
        before = farm.request_count
        with pytest.raises(DriverTimeoutError):
            await driver.read()
        assert farm.request_count > before  # the request was read, just not answered
        farm.clear_fault()
        await driver.connect()
        assert _values(await driver.read())


async def test_exception_fault_makes_bad_samples_naming_the_code(farm: SimServer) -> None:
    farm.set_fault(Fault.exception())
    async with _connected(farm) as driver:
        samples = await driver.read()
        assert samples
        for sample in samples:
            assert sample.quality is Quality.BAD
            assert sample.error is not None
            assert "modbus exception 4" in sample.error
            assert "SERVER DEVICE FAILURE" in sample.error
        farm.clear_fault()  # live: the same connection reads good values again
        assert _values(await driver.read())


async def test_garbage_is_a_driver_error_and_recovers_after_reconnect(farm: SimServer) -> None:
    farm.set_fault(Fault.garbage())
    async with _connected(farm) as driver:
        for _ in range(3):
            try:
                samples = await driver.read()
            except DriverError:
                await driver.connect()
            else:
                assert all(s.quality is Quality.BAD for s in samples), samples
        farm.clear_fault()
        await driver.connect()
        assert _values(await driver.read())


async def test_frozen_values_stop_while_normal_ones_move(farm: SimServer) -> None:
    async with _connected(farm) as driver:
        first = _values(await driver.read())
        await asyncio.sleep(0.15)
        assert _values(await driver.read()) != first  # normal: the tanks move

        farm.set_fault(Fault.frozen())
        await asyncio.sleep(0.05)  # let an update that was under way finish
        frozen = _values(await driver.read())
        for _ in range(3):
            await asyncio.sleep(0.1)
            assert _values(await driver.read()) == frozen

        farm.clear_fault()
        await asyncio.sleep(0.15)
        assert _values(await driver.read()) != frozen


@pytest.mark.parametrize("name", sorted(PROFILES))
async def test_profiles_share_the_faults(name: str) -> None:
    async with (
        await serve_profile(name, HOST, 0, seed=1, interval=0.02, fault=Fault.exception(6)) as sim,
        _connected(sim, name) as driver,
    ):
        samples = await driver.read()
        assert all(
            s.error and "modbus exception 6 (SERVER DEVICE BUSY)" in s.error for s in samples
        )

        sim.set_fault(Fault.frozen())
        await asyncio.sleep(0.05)
        frozen = _values(await driver.read())
        await asyncio.sleep(0.1)
        assert _values(await driver.read()) == frozen

        sim.set_fault(Fault.silent())
        with pytest.raises(DriverTimeoutError):
            await driver.read()


async def test_cli_starts_with_a_fault() -> None:
    args = ("--port", "0", "--tanks", "1", "--fault", "exception:3")
    async with serving(*args, banner=TANK_FARM_BANNER) as served:
        async with connected(
            ModbusTcpDriver("cli", HOST, served.port, 1, TANK_POINTS, timeout=2.0)
        ) as driver:
            samples = await driver.read()
        assert all(s.error and "modbus exception 3" in s.error for s in samples), samples
        log = served.log + await sigterm(served.process)
    assert "tank farm: fault exception:3" in log
    assert "tank farm stopped" in log
