"""A subscribed value reaches the agent when it arrives, not at the next poll (G6, issue 11.4).

The driver hands data changes out as they arrive (`pushed`); the agent's poller takes them
between its ticks and passes them on at once, and its read at the tick leaves out what was
pushed. The subscription asks for the configured intervals (publishing 20 ms by default) and
reports what the server granted. Against the real asyncua slope simulator; its own updates
are turned off (a long interval), so every change here is one the test makes (`set_status`
writes the node again with fresh timestamps). Every wait is bounded by a deadline; none of
these tests asserts how fast anything is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from drivers.base import DriverConnectionError, PushingDriver, Quality
from drivers.opcua import FLAG_HELD, OpcUaDriver, ReadMode, UaPoint
from edge_agent.config import parse_site_config
from edge_agent.core.points import resolve_points
from edge_agent.kinds import build_driver
from edge_agent.shell.poller import DevicePoller, PolledPoint, queue_sink
from simulators.slope_opcua import SlopeServer
from specs.catalogue import default_catalogue
from specs.records import Reading
from tests.support.config_files import site_head
from tests.support.connected import connected
from tests.support.pollers import device_poller, running

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
  - {id: slope, driver: opcua, endpoint: "ENDPOINT", poll: POLLEXTRA,
     points: [{point: S1-GX, quota: BP-GX, node: "ns=2;s=Slope.G1.X"},
              {point: S1-GY, quota: BP-GY, node: "ns=2;s=Slope.G1.Y"}]}
"""
)


def agent_driver(
    sim: SlopeServer, poll: str, extra: str = ""
) -> tuple[OpcUaDriver, dict[str, PolledPoint]]:
    """The driver and points the agent builds from a site map (more device keys: `extra`)."""
    text = SITE.replace("ENDPOINT", sim.endpoint).replace("POLLEXTRA", poll + extra)
    config = parse_site_config(text, "site.yaml", Path("/etc/ganzhi"))
    points = resolve_points(config)
    driver = build_driver(config.devices[0], points)
    assert isinstance(driver, OpcUaDriver)
    catalogue = default_catalogue()
    polled = {}
    for point in points:
        indicator = catalogue.get(point.quota)
        assert indicator is not None
        polled[point.point] = PolledPoint(point, indicator)
    return driver, polled


def subscribed(sim: SlopeServer) -> contextlib.AbstractAsyncContextManager[OpcUaDriver]:
    return connected(
        OpcUaDriver(
            "slope-1",
            sim.endpoint,
            [UaPoint(key, sim.node_id(key)) for key in KEYS],
            publishing_interval=PUBLISHING,
            keepalive=KEEPALIVE,
            timeout=2.0,
        )
    )


async def test_a_change_is_pushed_when_it_arrives_and_the_next_read_leaves_it_out() -> None:
    async with (
        SlopeServer(stations=1, seed=7, interval=NO_UPDATES) as sim,
        subscribed(sim) as driver,
    ):
        assert isinstance(driver, PushingDriver)
        first = {s.key: s for s in await driver.read()}  # the initial values
        assert all(s.quality is Quality.GOOD for s in first.values())
        pushing = asyncio.create_task(driver.pushed())
        await asyncio.sleep(0)  # waiting: nothing new has arrived yet
        assert not pushing.done()
        written = time.time()
        await sim.set_status("Slope.G1.X", "UncertainLastUsableValue")
        async with asyncio.timeout(10):
            (changed,) = await pushing
        after = await driver.read()
        again = await driver.read()
    # Only the point that changed, with its own SourceTimestamp.
    assert changed.key == "Slope.G1.X"
    assert changed.quality is Quality.UNCERTAIN
    assert FLAG_HELD not in changed.flags
    assert changed.t_wall >= written - 0.01
    # The read of the same cycle gives the other point only (the same observation again);
    # the next cycle's read gives both again, as repeats.
    assert [(s.key, FLAG_HELD in s.flags) for s in after] == [("Slope.G1.Y", True)]
    assert [(s.key, FLAG_HELD in s.flags) for s in again] == [
        ("Slope.G1.X", True),
        ("Slope.G1.Y", True),
    ]


async def test_a_change_not_taken_by_pushed_is_returned_by_read() -> None:
    async with (
        SlopeServer(stations=1, seed=7, interval=NO_UPDATES) as sim,
        subscribed(sim) as driver,
    ):
        await driver.read()
        link = driver._link
        assert link is not None
        await sim.set_status("Slope.G1.X", "UncertainLastUsableValue")
        async with asyncio.timeout(10):
            while not link.unsent:
                await asyncio.sleep(0.01)
        got = {s.key: s for s in await driver.read()}
    assert got["Slope.G1.X"].quality is Quality.UNCERTAIN
    assert FLAG_HELD not in got["Slope.G1.X"].flags
    assert FLAG_HELD in got["Slope.G1.Y"].flags


async def test_a_point_pushes_at_most_one_new_value_per_sampling_interval() -> None:
    # asyncua's server reports every write, whatever sampling interval was asked; the agent
    # still stores one value per point per sampling interval (here the 30 s asked).
    async with SlopeServer(stations=1, seed=7, interval=NO_UPDATES) as sim:
        driver = OpcUaDriver(
            "slope-1",
            sim.endpoint,
            [UaPoint(key, sim.node_id(key)) for key in KEYS],
            publishing_interval=PUBLISHING,
            sampling_interval=30.0,
            keepalive=KEEPALIVE,
        )
        async with connected(driver):
            await driver.read()  # the initial values: the next ones are due in 27 s
            link = driver._link
            assert link is not None
            await sim.set_status("Slope.G1.X", "UncertainLastUsableValue")
            async with asyncio.timeout(10):
                while "Slope.G1.X" not in link.unsent:
                    await asyncio.sleep(0.01)
            pushing = asyncio.create_task(driver.pushed())
            for _ in range(3):
                await asyncio.sleep(0)
            held_back = not pushing.done()
            pushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pushing
            # The poll's read takes it: nothing was pushed this cycle.
            got = {s.key: s for s in await driver.read()}
    assert held_back
    assert got["Slope.G1.X"].quality is Quality.UNCERTAIN


async def test_a_link_gone_silent_while_waiting_for_pushes_is_reported() -> None:
    async with (
        SlopeServer(stations=1, seed=7, interval=NO_UPDATES) as sim,
        subscribed(sim) as driver,
    ):
        await driver.read()
        pushing = asyncio.create_task(driver.pushed())
        await asyncio.sleep(0)
        sim.hang()  # no more publish responses, not even keepalives
        try:
            # asyncua's watchdog or the publish silence (1.5 keepalives), not never.
            with pytest.raises(DriverConnectionError):
                async with asyncio.timeout(3 * KEEPALIVE):
                    await pushing
        finally:
            sim.unhang()


async def test_poll_mode_pushes_nothing() -> None:
    async with SlopeServer(stations=1, seed=7, interval=NO_UPDATES) as sim:
        driver = OpcUaDriver(
            "slope-1", sim.endpoint, [UaPoint(KEYS[0], sim.node_id(KEYS[0]))], mode=ReadMode.POLL
        )
        async with connected(driver):
            pushing = asyncio.create_task(driver.pushed())
            await sim.set_status(KEYS[0], "UncertainLastUsableValue")
            (sample,) = await driver.read()
            assert not pushing.done()
            pushing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pushing
    assert sample.quality is Quality.UNCERTAIN


async def test_the_subscription_asks_for_the_configured_intervals_and_logs_the_granted_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A server whose limit is 200 ms: it grants that instead of the 20 ms asked for.
    async with SlopeServer(
        stations=1, seed=7, interval=NO_UPDATES, min_publishing_interval=0.2
    ) as sim:
        driver, _ = agent_driver(sim, "2s")
        assert driver.publishing_interval == pytest.approx(0.02)  # asked, before connecting
        with caplog.at_level(logging.INFO, logger="drivers.opcua.driver"):
            await driver.connect()
        try:
            granted = driver.publishing_interval
            keepalive = driver.keepalive_period
        finally:
            await driver.close()
    ((asked, revised),) = sim.subscriptions
    assert asked == pytest.approx(0.02)
    assert revised == pytest.approx(0.2)
    assert granted == pytest.approx(0.2)
    assert keepalive == pytest.approx(0.2 * round(10 / 0.02))  # the count asked, at 200 ms
    (record,) = [r for r in caplog.records if "opcua_subscription_created" in r.getMessage()]
    line = record.getMessage()
    assert record.levelno == logging.WARNING  # slower than asked: every change waits longer
    assert "publishing_interval=0.2s (asked 0.02s)" in line
    assert "sampling_interval asked=2s" in line  # the poll, absent a sampling_interval


@contextlib.asynccontextmanager
async def polling(
    driver: OpcUaDriver, polled: dict[str, PolledPoint], *, interval: float
) -> AsyncIterator[tuple[DevicePoller, asyncio.Queue[Reading]]]:
    """`driver` polled every `interval` s into a queue, until the block ends."""
    queue: asyncio.Queue[Reading] = asyncio.Queue()
    poller = device_poller(
        driver, polled, interval=interval, sink=queue_sink(queue), backoff=lambda: iter([1.0] * 100)
    )
    async with running(poller):
        yield poller, queue


async def test_the_agent_stores_a_pushed_change_before_its_next_poll() -> None:
    async with SlopeServer(stations=1, seed=7, interval=NO_UPDATES) as sim:
        # Sampled every 100 ms (a change may come any time), read every minute.
        driver, polled = agent_driver(sim, "60s", ", sampling_interval: 100ms")
        async with polling(driver, polled, interval=60.0) as (poller, queue), asyncio.timeout(20):
            first = [await queue.get(), await queue.get()]  # the first cycle
            await sim.set_status("Slope.G1.X", "UncertainLastUsableValue")
            # Within seconds, where the next poll is a minute away.
            pushed = await queue.get()
    assert sorted(r.point for r in first) == ["S1-GX", "S1-GY"]
    assert (pushed.point, pushed.quality.value, poller.cycles) == ("S1-GX", "uncertain", 1)


async def test_a_read_of_a_server_sampling_on_demand_is_stamped_during_the_read() -> None:
    # MaxAge 0 asks the server for a fresh value; a server that reads its device then (the
    # simulator with fresh_reads) stamps it during the Read: the reading's t is the poll, as
    # a Modbus reading's is (bench.latency relies on it).
    async with SlopeServer(stations=1, seed=7, interval=NO_UPDATES, fresh_reads=True) as sim:
        driver = OpcUaDriver(
            "slope-1",
            sim.endpoint,
            [UaPoint(key, sim.node_id(key)) for key in KEYS],
            mode=ReadMode.POLL,
        )
        async with connected(driver):
            before = time.time()
            first = await driver.read()
            between = time.time()
            second = await driver.read()
            after = time.time()
    assert all(before <= s.t_wall <= between and FLAG_HELD not in s.flags for s in first)
    assert all(between <= s.t_wall <= after and FLAG_HELD not in s.flags for s in second)
    assert len(sim.read_calls) == 2  # one Read service call per read


async def test_a_link_lost_between_polls_is_said_once_and_the_poll_keeps_its_cadence() -> None:
    # The subscription goes silent while the poller waits for pushes: its BAD `link_lost`
    # readings come then, once, and the next cycle waits for its tick as after a failed read
    # (not an immediate second set of `link_down` readings).
    async with SlopeServer(stations=1, seed=7, interval=NO_UPDATES) as sim:
        driver, polled = agent_driver(sim, "30s", ", keepalive: 1s")
        async with polling(driver, polled, interval=30.0) as (poller, queue):
            try:
                async with asyncio.timeout(20):
                    first = [await queue.get(), await queue.get()]
                    sim.hang()
                    lost = [await queue.get(), await queue.get()]
                for _ in range(5):
                    await asyncio.sleep(0)
                more = queue.qsize()
                cycles = poller.cycles
            finally:
                sim.unhang()
    assert all(r.quality.value == "good" for r in first)
    assert [(r.quality.value, "link_lost" in r.flags) for r in lost] == [("bad", True)] * 2
    assert (more, cycles) == (0, 1)  # nothing else until the next tick, 30 s on


def test_intervals_must_be_positive() -> None:
    with pytest.raises(ValueError, match="sampling_interval"):
        OpcUaDriver("d", "opc.tcp://127.0.0.1:4840", sampling_interval=0.0)
