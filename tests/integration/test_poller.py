"""DevicePoller against the real pymodbus tank farm and the real Modbus TCP driver.

No mocks: the device is the in-process simulator on a loopback port, the driver is the one the
agent runs (built by `build_driver` from a parsed site map). Where a test needs to see inside,
a small wrapper implementing the Driver protocol counts calls and delegates to the real driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from drivers.base import ColumnarDriver, Driver, RawSample
from drivers.modbus.tcp import ModbusTcpDriver
from edge_agent.config import SiteConfig, parse_site_config
from edge_agent.core.points import ResolvedPoint, resolve_points
from edge_agent.kinds import build_driver
from edge_agent.shell.poller import DevicePoller, queue_sink
from simulators.tankfarm import TankFarmServer, serve_tankfarm
from specs.records import Quality, Reading, parse_iso_time
from tests.support.broker import free_port
from tests.support.config_files import tcp_device_site
from tests.support.fake_driver import FakeDriver
from tests.support.pollers import device_poller, polled_points, running

HOST = "127.0.0.1"

# One tank of the simulator (holding 0 level m, 2 temperature ℃, 4 pressure MPa; input 0 LEL,
# 2 H2S ppm), read through points that also report in other units, so the whole path
# raw -> scale/offset -> unit -> canonical is exercised on real registers.
POINTS_YAML = """\
      - {point: T1-LT, quota: WHP-LT, address: {table: holding, start: 0, type: float32}}
      - point: T1-LT-MM
        quota: WHP-LT
        unit: mm
        scale: 1000.0
        address: {table: holding, start: 0, type: float32}
      - {point: T1-TT, quota: WHP-TT, address: {table: holding, start: 2, type: float32}}
      - point: T1-TT-K
        quota: WHP-TT
        unit: K
        offset: 273.15
        address: {table: holding, start: 2, type: float32}
      - {point: T1-PT, quota: WHP-PT, address: {table: holding, start: 4, type: float32}}
      - point: T1-PT-KPA
        quota: WHP-PT
        unit: kPa
        scale: 1000.0
        address: {table: holding, start: 4, type: float32}
      - {point: T1-LEL, quota: WHP-LEL, address: {table: input, start: 0, type: float32}}
      - {point: T1-TOX, quota: WHP-TOX, address: {table: input, start: 2, type: float32}}
"""
HOLE_YAML = """\
      - {point: T1-HOLE, quota: WHP-LT, address: {table: holding, start: 5000, type: uint16}}
"""


def site(port: int, *, poll: str = "100ms", timeout: str = "1s", points: str = POINTS_YAML) -> str:
    return tcp_device_site(HOST, port, points, poll=poll, timeout=timeout)


@dataclass
class Device:
    """A parsed one-device site map: the config, its points and a real driver for it."""

    config: SiteConfig
    points: list[ResolvedPoint]
    driver: Driver

    @property
    def interval(self) -> float:
        return self.config.devices[0].poll

    @property
    def codes(self) -> list[str]:
        return sorted(p.point for p in self.points)


def device(port: int, **kwargs: str) -> Device:
    config = parse_site_config(site(port, **kwargs), "site.yaml", Path(__file__).parent)
    points = resolve_points(config)
    return Device(config, points, build_driver(config.devices[0], points))


@dataclass
class CountingDriver:
    """The Driver protocol around a real driver: counts and times calls, then delegates.

    `slow_reads` maps a read's index (0-based) to extra seconds that read takes, to make a
    cycle overrun its slot.
    """

    inner: Driver
    slow_reads: dict[int, float] = field(default_factory=dict)
    connect_times: list[float] = field(default_factory=list)
    connected_count: int = 0
    read_times: list[float] = field(default_factory=list)
    closes: int = 0

    @property
    def device_id(self) -> str:
        return self.inner.device_id

    async def connect(self) -> None:
        self.connect_times.append(time.monotonic())
        await self.inner.connect()
        self.connected_count += 1

    async def read(self) -> list[RawSample]:
        index = len(self.read_times)
        self.read_times.append(time.monotonic())
        if index in self.slow_reads:
            await asyncio.sleep(self.slow_reads[index])
        return await self.inner.read()

    async def close(self) -> None:
        self.closes += 1
        await self.inner.close()


@dataclass
class Polling:
    poller: DevicePoller
    task: asyncio.Task[None]
    queue: asyncio.Queue[Reading]
    size: int

    async def cycle(self, timeout: float = 3.0) -> list[Reading]:
        """The readings of the next poll cycle (exactly one per point), within `timeout`."""
        deadline = time.monotonic() + timeout
        readings: list[Reading] = []
        while len(readings) < self.size:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"only {len(readings)} of {self.size} readings in {timeout}s"
            readings.append(await asyncio.wait_for(self.queue.get(), remaining))
        return readings

    async def cycle_where(
        self, wanted: Callable[[list[Reading]], bool], timeout: float = 5.0
    ) -> list[list[Reading]]:
        """Every cycle up to and including the first that satisfies `wanted`."""
        deadline = time.monotonic() + timeout
        seen: list[list[Reading]] = []
        while not seen or not wanted(seen[-1]):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no wanted cycle within {timeout}s; last: {seen[-1:]}"
            assert not self.task.done(), "the poller task ended"
            seen.append(await self.cycle(remaining))
        return seen


def constant_backoff(delay: float, calls: list[int] | None = None) -> Callable[[], Iterator[float]]:
    """A deterministic backoff factory; appends to `calls` each time a new backoff starts."""

    def factory() -> Iterator[float]:
        if calls is not None:
            calls.append(1)
        return itertools.repeat(delay)

    return factory


@contextlib.asynccontextmanager
async def polling(
    driver: Driver,
    points: Sequence[ResolvedPoint],
    *,
    interval: float,
    backoff: Callable[[], Iterator[float]] | None = None,
    wall_clock: Callable[[], float] = time.time,
) -> AsyncIterator[Polling]:
    polled = polled_points(points)
    queue: asyncio.Queue[Reading] = asyncio.Queue()
    poller = device_poller(
        driver,
        polled,
        interval=interval,
        sink=queue_sink(queue),
        backoff=backoff if backoff is not None else constant_backoff(0.2),
        wall_clock=wall_clock,
    )
    async with running(poller) as task:
        yield Polling(poller, task, queue, len(polled))


@pytest.fixture
async def farm() -> AsyncIterator[TankFarmServer]:
    async with await serve_tankfarm(HOST, 0, tanks=1, seed=11, interval=0.05) as running:
        yield running


def all_good(cycle: list[Reading]) -> bool:
    return all(r.quality is Quality.GOOD for r in cycle)


def all_bad(cycle: list[Reading]) -> bool:
    return all(r.quality is Quality.BAD for r in cycle)


def by_point(cycle: list[Reading]) -> dict[str, Reading]:
    readings = {r.point: r for r in cycle}
    assert len(readings) == len(cycle), "a point appeared twice in one cycle"
    return readings


def value(reading: Reading) -> float:
    assert reading.value is not None, reading
    return reading.value


# --- (a) readings flow ---------------------------------------------------------------------


async def test_good_readings_one_per_point_per_cycle_in_canonical_units(
    farm: TankFarmServer,
) -> None:
    dev = device(farm.port)
    assert isinstance(dev.driver, ModbusTcpDriver)
    real = dev.driver
    async with polling(dev.driver, dev.points, interval=dev.interval) as run:
        cycles = [await run.cycle() for _ in range(5)]
        assert not run.task.done()
        was_connected = real.connected
    assert was_connected
    assert run.task.cancelled()
    assert not real.connected, "cancelling the poller closes the link"

    units = {p.point: p.canonical_unit for p in dev.points}
    assert {units["T1-LT-MM"], units["T1-TT-K"], units["T1-PT-KPA"]} == {"m", "℃", "MPa"}
    for cycle in cycles:
        assert sorted(r.point for r in cycle) == dev.codes
        readings = by_point(cycle)
        for reading in cycle:
            assert reading.quality is Quality.GOOD, reading
            assert reading.flags == (), reading
            assert math.isfinite(value(reading))
            assert abs(parse_iso_time(reading.t) - time.time()) < 30
            assert reading.unit == units[reading.point]
        assert 0.0 <= value(readings["T1-LT"]) <= 10.0
        assert 15.0 <= value(readings["T1-TT"]) <= 40.0
        assert 0.1 <= value(readings["T1-PT"]) <= 0.3
        # Same register, reported in mm / K / kPa: the same canonical value.
        assert value(readings["T1-LT-MM"]) == pytest.approx(value(readings["T1-LT"]), rel=1e-9)
        assert value(readings["T1-TT-K"]) == pytest.approx(value(readings["T1-TT"]), rel=1e-9)
        assert value(readings["T1-PT-KPA"]) == pytest.approx(value(readings["T1-PT"]), rel=1e-9)
    # One holding and one input request per cycle reached the simulator.
    assert farm.request_count >= 2 * len(cycles)


async def test_a_point_the_device_refuses_is_bad_and_the_rest_stay_good(
    farm: TankFarmServer,
) -> None:
    dev = device(farm.port, points=POINTS_YAML + HOLE_YAML)
    async with polling(dev.driver, dev.points, interval=dev.interval) as run:
        cycles = [await run.cycle() for _ in range(3)]
        assert not run.task.done()
    for cycle in cycles:
        readings = by_point(cycle)
        hole = readings.pop("T1-HOLE")
        assert (hole.quality, hole.value) == (Quality.BAD, None)
        assert len(hole.flags) == 1, "the driver's Modbus exception becomes a flag"
        assert all_good(list(readings.values()))


# --- (b) link loss and reconnect -----------------------------------------------------------


async def test_lost_device_gives_bad_readings_then_reconnects_on_the_same_port() -> None:
    farm = await serve_tankfarm(HOST, 0, tanks=1, seed=11, interval=0.05)
    port = farm.port
    dev = device(port)
    driver = CountingDriver(dev.driver)
    backoffs: list[int] = []
    try:
        async with polling(
            driver, dev.points, interval=dev.interval, backoff=constant_backoff(0.3, backoffs)
        ) as run:
            await run.cycle_where(all_good)

            await farm.stop()
            flags_seen: set[str] = set()

            def link_down_seen(cycle: list[Reading]) -> bool:
                if all_bad(cycle):
                    for reading in cycle:
                        flags_seen.update(reading.flags)
                return {"link_lost", "link_down"} <= flags_seen

            outage = await run.cycle_where(link_down_seen)
            bad = list(itertools.dropwhile(all_good, outage))
            assert len(bad) >= 2
            for cycle in bad:
                assert sorted(r.point for r in cycle) == dev.codes, "one BAD reading per point"
                for reading in cycle:
                    assert (reading.quality, reading.value) == (Quality.BAD, None)
                    assert reading.unit in {"m", "℃", "MPa", "%LEL", "ppm"}
                    assert {"link_lost", "link_down"} & set(reading.flags), reading
            assert "link_lost" in bad[0][0].flags, "the first failed cycle says the link broke"
            # Still polling with the device gone, not crashed; and retrying (refused) meanwhile.
            refused = await run.cycle_where(lambda _: len(driver.connect_times) >= 2)
            assert all(all_bad(cycle) for cycle in refused)
            assert all_bad(await run.cycle())
            assert driver.connected_count == 1, "the retry was refused"
            assert not run.task.done()

            farm = await serve_tankfarm(HOST, port, tanks=1, seed=12, interval=0.05)
            assert farm.port == port
            await run.cycle_where(all_good)
            assert not run.task.done()
            more = [await run.cycle() for _ in range(3)]
            assert all(all_good(c) for c in more), "once back, it stays GOOD"
            assert farm.request_count >= 3
    finally:
        await farm.stop()
    assert driver.connected_count == 2
    assert len(driver.connect_times) >= 3, "connect, refused retry(s), reconnect"
    # A fresh backoff at start and after every successful connect (the delays start over).
    assert len(backoffs) == 1 + driver.connected_count
    assert driver.closes >= 2, "closed after the loss and at cancellation"


# --- (c) cadence ---------------------------------------------------------------------------


async def test_cadence_is_one_cycle_per_interval(farm: TankFarmServer) -> None:
    dev = device(farm.port, poll="100ms")
    async with polling(dev.driver, dev.points, interval=dev.interval) as run:
        await asyncio.sleep(1.5)
        cycles = run.poller.cycles
        queued = run.queue.qsize()
        assert not run.task.done()
    # t = 0, 0.1, ..., 1.5 -> about 16 cycles; far fewer means it stalls, more means it bunches.
    assert 10 <= cycles <= 17, cycles
    # A cycle's readings are all emitted before it counts, with no await that yields between.
    assert queued == cycles * len(dev.points), (cycles, queued)


async def test_an_overrun_skips_slots_instead_of_bunching_reads(farm: TankFarmServer) -> None:
    dev = device(farm.port, poll="100ms")
    # The 3rd read takes 0.55 s: slots at +0.1 .. +0.5 pass while it runs.
    driver = CountingDriver(dev.driver, slow_reads={2: 0.55})
    async with polling(driver, dev.points, interval=dev.interval) as run:
        deadline = time.monotonic() + 5.0
        while len(driver.read_times) < 8:
            assert time.monotonic() < deadline, driver.read_times
            await asyncio.sleep(0.05)
        assert not run.task.done()
    gaps = [b - a for a, b in itertools.pairwise(driver.read_times)]
    assert gaps[2] >= 0.55, "the slow read itself"
    # Bunching would fire the missed slots back to back (gaps of a few ms) after the slow read.
    assert min(gaps) >= 0.05, gaps


# --- (d) reconnect backoff -----------------------------------------------------------------


async def test_connect_attempts_are_spaced_by_the_backoff_not_by_the_poll() -> None:
    dev = device(free_port(), poll="50ms")  # nothing listens there
    driver = CountingDriver(dev.driver)
    async with polling(
        driver, dev.points, interval=dev.interval, backoff=lambda: iter([0.3] * 1000)
    ) as run:
        await asyncio.sleep(1.2)
        cycles = run.poller.cycles
        readings = [run.queue.get_nowait() for _ in range(run.queue.qsize())]
        assert not run.task.done()
    attempts = driver.connect_times
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # Attempts at ~0, >=0.3, >=0.6, >=0.9 (each rounded up to the next 50 ms slot).
    assert 3 <= len(attempts) <= 5, gaps
    assert all(gap >= 0.3 for gap in gaps), gaps
    assert driver.connected_count == 0
    # Meanwhile every slot still produced one BAD reading per point, flagged link_down.
    assert cycles >= 3 * len(attempts), (cycles, len(attempts))
    assert len(readings) >= (cycles - 1) * len(dev.points)
    for reading in readings:
        assert (reading.quality, reading.value) == (Quality.BAD, None)
        assert "link_down" in reading.flags


async def test_a_wall_clock_step_flags_one_cycle_and_keeps_the_cadence() -> None:
    stepped = asyncio.Event()

    def wall_clock() -> float:
        # NTP steps the wall clock back one hour once the test says so; monotonic time goes on.
        return time.time() - (3600.0 if stepped.is_set() else 0.0)

    dev = device(free_port(), poll="100ms")
    script = FakeDriver(dev.points, itertools.count(), clock=wall_clock)
    async with polling(script, dev.points, interval=dev.interval, wall_clock=wall_clock) as run:
        before = await run.cycle()
        stepped.set()
        cycles = [await run.cycle() for _ in range(4)]
        count = run.poller.cycles
        await asyncio.sleep(1.0)
        cadence = run.poller.cycles - count
    assert not any("clock_jump" in r.flags for r in before)
    flagged = [any("clock_jump" in r.flags for r in cycle) for cycle in cycles]
    # The step is noticed once: the cycle whose emit straddles it (the first or second after).
    assert sum(flagged) == 1, flagged
    assert all("clock_jump" in r.flags for r in cycles[flagged.index(True)])
    assert 7 <= cadence <= 12, cadence


async def test_only_exact_repeats_are_dropped_not_changes_under_one_timestamp() -> None:
    dev = device(free_port(), poll="50ms")
    script = FakeDriver(dev.points, iter([1.0, 1.0, 2.0, *[2.0] * 1000]))
    async with polling(script, dev.points, interval=dev.interval) as run:
        while run.poller.cycles < 5:
            await asyncio.sleep(0.05)
    values = []
    while not run.queue.empty():
        values.append(run.queue.get_nowait().value)
    per_point = len(dev.points)
    assert values == [1.0] * per_point + [2.0] * per_point, values


async def test_cancelling_a_poller_stops_it_even_if_the_driver_swallows_the_cancel() -> None:
    dev = device(free_port())
    driver = FakeDriver(swallow_cancel=True)
    async with polling(driver, dev.points, interval=dev.interval) as run:
        while driver.reads == 0:
            await asyncio.sleep(0.01)
        run.task.cancel()
        done, _ = await asyncio.wait([run.task], timeout=5)
        assert done, "the poller kept running after cancel (shutdown would hang)"
        assert run.task.cancelled()
    assert driver.reads == 1


async def test_a_columnar_read_drops_exact_repeats_and_only_those() -> None:
    # The farm's registers stand still and the wall clock too: from the second cycle on,
    # every reading repeats the point's last one (same time, value, quality) and is dropped.
    async with await serve_tankfarm(HOST, 0, tanks=1, seed=11, interval=3600.0) as farm:
        dev = device(farm.port, poll="50ms")
        built = dev.driver
        assert isinstance(built, ModbusTcpDriver)
        frozen = time.time()
        driver = ModbusTcpDriver(
            built.device_id,
            HOST,
            farm.port,
            1,
            [point for request in built.plan for point in request.points],
            wall_clock=lambda: frozen,
        )
        assert isinstance(driver, ColumnarDriver)
        async with polling(
            driver, dev.points, interval=dev.interval, wall_clock=lambda: frozen
        ) as run:
            first = await run.cycle()
            while run.poller.cycles < 4:
                await asyncio.sleep(0.05)
            cycles = run.poller.cycles
        assert all_good(first)
        assert run.queue.empty()
        assert run.poller.repeats_dropped == (cycles - 1) * len(first)


async def test_the_sink_says_good_once_a_good_reading_is_queued() -> None:
    queue: asyncio.Queue[Reading] = asyncio.Queue(maxsize=2)
    good = asyncio.Event()
    sink = queue_sink(queue, good)
    bad = Reading("T1", "WHP-LT", "t", None, "m", Quality.BAD)
    fine = Reading("T1", "WHP-LT", "t", 1.0, "m", Quality.GOOD)
    await sink([bad, bad])
    assert not good.is_set()
    waiting = asyncio.ensure_future(sink([bad, fine]))  # the queue is full: the sink waits
    await asyncio.sleep(0)
    assert not good.is_set()
    assert [queue.get_nowait(), queue.get_nowait()] == [bad, bad]
    await waiting
    assert good.is_set()
    assert [queue.get_nowait(), queue.get_nowait()] == [bad, fine]
