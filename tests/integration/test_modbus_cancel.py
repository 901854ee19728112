"""Cancelling Modbus TCP reads, connects and closes against the real pymodbus server.

The hang these tests pin down: pymodbus waits for a reply with ``asyncio.wait_for``, and on
Python 3.11 ``wait_for`` returns the reply instead of raising CancelledError when the reply
came in the same loop iteration as the cancellation. A poll task cancelled at that moment
polled on for ever, and whoever awaited it (a test's teardown, the agent's shutdown) hung.

Each test bounds its wait for the cancelled task, so a regression fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from drivers.base import RawSample
from drivers.modbus.codec import DataType, Table
from drivers.modbus.plan import RegisterPoint
from drivers.modbus.tcp import ModbusTcpDriver
from edge_agent.config import parse_site_config
from edge_agent.core.points import resolve_points
from edge_agent.kinds import build_driver
from edge_agent.shell.poller import DevicePoller, queue_sink
from simulators.faults import Fault
from simulators.lifecycle import cancel_task
from simulators.tankfarm import TankFarmServer, serve_tankfarm
from specs.records import Reading
from tests.support.config_files import tcp_device_site
from tests.support.pollers import device_poller, polled_points

HOST = "127.0.0.1"
POINTS = (
    RegisterPoint("level", Table.HOLDING, 0, DataType.FLOAT32),
    RegisterPoint("lel", Table.INPUT, 0, DataType.FLOAT32),
)
# A cancelled task gets this long to end. Generous for a loaded machine; the bug never ends.
ENDS_WITHIN = 5.0


@pytest.fixture
async def farm() -> AsyncIterator[TankFarmServer]:
    async with await serve_tankfarm(HOST, 0, tanks=1, seed=3, interval=0.05) as running:
        yield running


@pytest.fixture(autouse=True)
def _quiet_pymodbus() -> Iterator[None]:
    # Thousands of cancelled transactions: pymodbus logs each orphaned reply.
    logger = logging.getLogger("pymodbus")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


async def ends(task: asyncio.Task[None]) -> bool:
    """Whether the (cancelled) task ends within ENDS_WITHIN seconds; if not, stop it hard."""
    done, _ = await asyncio.wait([task], timeout=ENDS_WITHIN)
    if done:
        return True
    # Swallowed again and again would keep it alive: cancel until it gives in, then report.
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.1)
    return False


def cancel_on_reply(driver: ModbusTcpDriver, task: asyncio.Task[None]) -> None:
    """Cancel `task` from inside pymodbus, as a reply's bytes arrive, before it is matched.

    That is the worst moment: the reply completes pymodbus's response future in the same
    loop iteration in which the task's wait is cancelled.
    """
    client = driver._client
    assert client is not None, "connect first"

    def trace(sending: bool, data: bytes) -> bytes:
        if not sending and not task.done():
            task.cancel()
        return data

    client.ctx.trace_packet = trace


async def test_a_read_cancelled_as_its_reply_arrives_raises_cancelled(
    farm: TankFarmServer,
) -> None:
    driver = ModbusTcpDriver("tank", HOST, farm.port, 1, POINTS, timeout=1.0)
    await driver.connect()
    reads = 0

    async def read_forever() -> None:
        nonlocal reads
        while True:
            await driver.read()
            reads += 1

    task = asyncio.create_task(read_forever())
    cancel_on_reply(driver, task)
    try:
        assert await ends(task), f"the read swallowed the cancellation ({reads} more reads)"
        assert task.cancelled()
        assert reads == 0, "no read completes after its task was cancelled"
    finally:
        await driver.close()


def poller_for(port: int) -> tuple[DevicePoller, ModbusTcpDriver, asyncio.Queue[Reading]]:
    """The agent's own poller and driver for a one-device site map (as `edge-agent run`)."""
    points_yaml = """\
      - {point: T1-LT, quota: WHP-LT, address: {table: holding, start: 0, type: float32}}
      - {point: T1-LEL, quota: WHP-LEL, address: {table: input, start: 0, type: float32}}
"""
    config = parse_site_config(
        tcp_device_site(HOST, port, points_yaml, poll="20ms"),
        "site.yaml",
        Path(__file__).parent,
    )
    points = resolve_points(config)
    driver = build_driver(config.devices[0], points)
    assert isinstance(driver, ModbusTcpDriver)
    queue: asyncio.Queue[Reading] = asyncio.Queue()
    poller = device_poller(
        driver,
        polled_points(points),
        interval=config.devices[0].poll,
        sink=queue_sink(queue),
        backoff=lambda: iter([0.05] * 10_000),
    )
    return poller, driver, queue


async def test_a_poller_cancelled_as_a_reply_arrives_stops_and_closes(
    farm: TankFarmServer,
) -> None:
    # The hang of the clock-step poller test: the poller polled on after its cancellation.
    poller, driver, queue = poller_for(farm.port)
    task = asyncio.create_task(poller.run())
    deadline = time.monotonic() + ENDS_WITHIN
    while not driver.connected:
        assert time.monotonic() < deadline, "never connected"
        await asyncio.sleep(0.01)
    await queue.get()  # polling for real
    cancel_on_reply(driver, task)
    cycles = poller.cycles
    assert await ends(task), f"the poller ran {poller.cycles - cycles} cycles after cancel"
    assert task.cancelled()
    assert not driver.connected, "the poller's finally closed the link"


@dataclass
class Outcomes:
    """How each cancelled iteration ended, by the step that was running when cancelled."""

    steps: Counter[str] = field(default_factory=Counter)
    ended: Counter[str] = field(default_factory=Counter)
    hung: Counter[str] = field(default_factory=Counter)


async def stall_the_loop(rng: random.Random) -> None:
    """Block the event loop for a few ms at random, as a busy machine does.

    While the loop is blocked, replies, timers and wake-ups pile up and run in one iteration:
    the condition under which a reply and a cancellation meet.
    """
    while True:
        await asyncio.sleep(rng.uniform(0.0, 0.004))
        time.sleep(rng.uniform(0.0, 0.003))  # blocking on purpose: the stall is the point


async def test_random_cancellation_of_connect_read_and_close_always_ends(
    farm: TankFarmServer,
) -> None:
    rng = random.Random(20261124)
    outcomes = Outcomes()
    staller = asyncio.create_task(stall_the_loop(rng))
    try:
        for _ in range(300):
            driver = ModbusTcpDriver("tank", HOST, farm.port, 1, POINTS, timeout=1.0)
            step = ["start"]

            async def cycle(driver: ModbusTcpDriver = driver, step: list[str] = step) -> None:
                try:
                    while True:
                        step[0] = "connect"
                        await driver.connect()
                        for _ in range(rng.randint(0, 4)):
                            step[0] = "read"
                            await driver.read()
                        step[0] = "close"
                        await driver.close()
                finally:
                    await driver.close()

            task = asyncio.create_task(cycle())
            await asyncio.sleep(rng.uniform(0.0, 0.02))
            at = step[0]
            outcomes.steps[at] += 1
            task.cancel()
            if await ends(task):
                outcomes.ended["cancelled" if task.cancelled() else repr(task.exception())] += 1
            else:
                outcomes.hung[at] += 1
            assert not driver.connected
    finally:
        await cancel_task(staller)
    assert not outcomes.hung, outcomes
    assert outcomes.ended == Counter(cancelled=300), outcomes
    # The cancellations landed in every step, or the test proves less than it claims.
    assert {"connect", "read"} <= set(outcomes.steps), outcomes


async def test_cancelling_a_read_from_a_silent_server_ends_at_once() -> None:
    # The device never answers: the read waits for its 30 s timeout, unless cancelled.
    async with await serve_tankfarm(
        HOST, 0, tanks=1, seed=3, interval=0.05, fault=Fault.silent()
    ) as farm:
        driver = ModbusTcpDriver("tank", HOST, farm.port, 1, POINTS, timeout=30.0)
        await driver.connect()
        samples: list[RawSample] = []

        async def read() -> None:
            samples.extend(await driver.read())

        task = asyncio.create_task(read())
        while farm.request_count == 0:
            await asyncio.sleep(0.01)
        started = time.monotonic()
        task.cancel()
        assert await ends(task)
        assert task.cancelled()
        assert time.monotonic() - started < ENDS_WITHIN
        assert samples == []
        await driver.close()
        assert not driver.connected
