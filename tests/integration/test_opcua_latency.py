"""A subscribed value reaches the agent when it arrives, not at the next poll (G6, issue 11.4).

The agent's poller reads an OPC UA driver every `poll`; the server publishes on its own clock.
Given that cadence (`cycle`), a subscription read returns at a publish response: a value that
arrives while a read waits is returned by that read, not a poll later. Against the real asyncua
slope simulator; its own updates are turned off (a long interval), so every change here is
one the test makes (`set_status` writes the node again with fresh timestamps).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from drivers.base import DriverConnectionError, Quality
from drivers.opcua import FLAG_HELD, OpcUaDriver, UaPoint
from edge_agent.config import parse_site_config
from edge_agent.core.points import resolve_points
from edge_agent.kinds import build_driver
from simulators.slope_opcua import SlopeServer
from tests.support.config_files import site_head

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

KEYS = ("Slope.G1.X", "Slope.G1.Y")
PUBLISHING = 0.05
KEEPALIVE = 1.0
NO_UPDATES = 3600.0  # the simulator's own update interval: never, within a test
SITE = (
    site_head("BP")
    + """\
devices:
  - {id: slope, driver: opcua, endpoint: "ENDPOINT", poll: 4s, publishing_interval: 50ms,
     points: [{point: S1-GX, quota: BP-GX, node: "ns=2;s=Slope.G1.X"}]}
"""
)


@contextlib.asynccontextmanager
async def subscribed(sim: SlopeServer, cycle: float) -> AsyncIterator[OpcUaDriver]:
    driver = OpcUaDriver(
        "slope-1",
        sim.endpoint,
        [UaPoint(key, sim.node_id(key)) for key in KEYS],
        publishing_interval=PUBLISHING,
        keepalive=KEEPALIVE,
        timeout=2.0,
        cycle=cycle,
    )
    await driver.connect()
    try:
        yield driver
    finally:
        await driver.close()


async def test_a_value_arriving_after_a_read_began_is_returned_by_that_read() -> None:
    cycle = 4.0
    async with (
        SlopeServer(stations=1, seed=7, interval=NO_UPDATES) as sim,
        subscribed(sim, cycle) as driver,
    ):
        first = {s.key: s for s in await driver.read()}  # the initial values
        assert all(s.quality is Quality.GOOD for s in first.values())
        reading = asyncio.create_task(driver.read())
        await asyncio.sleep(0)  # the read is under way: nothing new has arrived yet
        assert not reading.done()
        written = time.time()
        await sim.set_status("Slope.G1.X", "UncertainLastUsableValue")
        async with asyncio.timeout(cycle):
            got = {s.key: s for s in await reading}
    changed = got["Slope.G1.X"]
    # The new DataValue itself, stamped with its own SourceTimestamp; before, the read
    # returned at once with the old one again (`held`), and the new one waited a whole poll.
    assert changed.quality is Quality.UNCERTAIN
    assert FLAG_HELD not in changed.flags
    assert changed.t_wall >= written - 0.01
    assert FLAG_HELD in got["Slope.G1.Y"].flags  # unchanged: the same observation again


async def test_a_fresh_unread_value_is_returned_without_waiting() -> None:
    cycle = 10.0
    async with (
        SlopeServer(stations=1, seed=7, interval=NO_UPDATES) as sim,
        subscribed(sim, cycle) as driver,
    ):
        await driver.read()
        link = driver._link
        assert link is not None
        await sim.set_status("Slope.G1.X", "UncertainLastUsableValue")
        async with asyncio.timeout(cycle / 2):
            while not link.changed.is_set():
                await asyncio.sleep(0.01)
        started = time.monotonic()
        got = {s.key: s for s in await driver.read()}
        took = time.monotonic() - started
    assert got["Slope.G1.X"].quality is Quality.UNCERTAIN
    assert took < cycle / 4  # at once: waiting would take 9 s (nothing else is published)


async def test_without_changes_a_read_returns_held_values_within_its_cycle() -> None:
    cycle = 1.0
    async with (
        SlopeServer(stations=1, seed=7, interval=NO_UPDATES) as sim,
        subscribed(sim, cycle) as driver,
    ):
        await driver.read()
        async with asyncio.timeout(cycle):
            again = await driver.read()
    assert all(FLAG_HELD in s.flags and s.quality is Quality.GOOD for s in again)


async def test_a_link_gone_silent_during_the_wait_is_reported_before_the_cycle_ends() -> None:
    cycle = 60.0
    async with (
        SlopeServer(stations=1, seed=7, interval=NO_UPDATES) as sim,
        subscribed(sim, cycle) as driver,
    ):
        await driver.read()
        reading = asyncio.create_task(driver.read())
        await asyncio.sleep(0)
        sim.hang()  # no more publish responses, not even keepalives
        try:
            # asyncua's watchdog or the publish silence (1.5 keepalives), not 54 s later.
            with pytest.raises(DriverConnectionError):
                async with asyncio.timeout(3 * KEEPALIVE):
                    await reading
        finally:
            sim.unhang()


async def test_the_agent_builds_subscriptions_that_wait_for_the_next_publish() -> None:
    async with SlopeServer(stations=1, seed=7, interval=NO_UPDATES) as sim:
        config = parse_site_config(
            SITE.replace("ENDPOINT", sim.endpoint), "site.yaml", Path("/etc/ganzhi")
        )
        driver = build_driver(config.devices[0], resolve_points(config))
        await driver.connect()
        try:
            await driver.read()
            reading = asyncio.create_task(driver.read())
            await asyncio.sleep(0)
            await sim.set_status("Slope.G1.X", "UncertainLastUsableValue")
            async with asyncio.timeout(4.0):  # the device's poll
                (sample,) = await reading
        finally:
            await driver.close()
    assert sample.quality is Quality.UNCERTAIN  # the value that came during the read


def test_a_cycle_must_be_positive() -> None:
    with pytest.raises(ValueError, match="cycle"):
        OpcUaDriver("d", "opc.tcp://127.0.0.1:4840", cycle=0.0)
