"""Modbus RTU bus and driver against the simulated RTU bus on a pseudo terminal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from drivers.base import (
    Driver,
    DriverConnectionError,
    DriverTimeoutError,
    Quality,
    RawSample,
)
from drivers.modbus.codec import DataType, Table
from drivers.modbus.plan import ReadRequest, RegisterPoint
from drivers.modbus.rtu import ModbusRtuDriver
from drivers.modbus.rtu_bus import RtuBus
from drivers.modbus.rtu_frame import RtuReply, build_read_frame, find_reply, reply_values, rtu_frame
from drivers.modbus.timing import rtu_transaction_seconds
from drivers.serial.settings import Parity, SerialSettings
from simulators.rtu_bus import RtuBusSim
from simulators.rtu_slaves import (
    COIL_BITS,
    DISCRETE_BITS,
    PATTERN_BASE,
    RAMP_BASE,
    Fault,
    SimSlave,
    headcount_slave,
    pattern_slave,
)
from tests.support.answering import ANSWERING
from tests.support.high_fds import SELECT_LIMIT, descriptors_on, low_fds_taken
from tests.support.ordered_bus import OrderedBus

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

H = Table.HOLDING
HEADCOUNT = 3
RATED = (12, 8, 20, 6)


# --- pure frame codec -------------------------------------------------------------------------


def test_read_frame_known_vector() -> None:
    # The textbook FC03 request: unit 1, 10 holding registers from 0.
    frame = build_read_frame(1, ReadRequest(H, 0, 10, ()))
    assert frame == bytes.fromhex("01 03 00 00 00 0A C5 CD")
    assert build_read_frame(17, ReadRequest(Table.COIL, 19, 37, ()))[:6] == bytes.fromhex(
        "11 01 00 13 00 25"
    )
    with pytest.raises(ValueError, match="unit"):
        build_read_frame(0, ReadRequest(H, 0, 1, ()))


def test_find_reply_hunts_past_noise_and_other_units() -> None:
    request = ReadRequest(H, 0, 2, ())
    good = rtu_frame(5, bytes([3, 4, 0x12, 0x34, 0xAB, 0xCD]))
    other = rtu_frame(6, bytes([3, 4, 0, 0, 0, 0]))
    assert find_reply(b"\x00\x05\xff" + other + good, 5, request) == RtuReply(
        5, 3, bytes.fromhex("1234ABCD")
    )
    assert find_reply(good[:-1], 5, request) is None  # incomplete
    corrupted = good[:4] + bytes([good[4] ^ 1]) + good[5:]
    assert find_reply(corrupted, 5, request) is None  # CRC catches it
    assert find_reply(rtu_frame(5, bytes([3, 2, 0, 1])), 5, request) is None  # wrong size
    assert find_reply(other, 5, request) is None
    exception = rtu_frame(5, bytes([0x83, 2]))
    assert find_reply(b"\x01" + exception, 5, request) == RtuReply(5, 3, exception_code=2)
    assert reply_values(RtuReply(5, 3, bytes.fromhex("1234ABCD")), request) == (0x1234, 0xABCD)
    bits = ReadRequest(Table.COIL, 0, 10, ())
    assert reply_values(RtuReply(5, 1, bytes([0b1000_0101, 0b10])), bits) == (
        1,
        0,
        1,
        0,
        0,
        0,
        0,
        1,
        0,
        1,
    )


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[RtuBusSim]:
    slaves = [headcount_slave(HEADCOUNT, RATED, seed=4), pattern_slave(1), pattern_slave(2)]
    async with RtuBusSim(slaves, interval=0.05, seed=1) as running:
        yield running


def settings(path: str, baudrate: int = 19200) -> SerialSettings:
    # 8N2: 11-bit characters like the spec's 8E1; a pty cannot keep parity across reopening.
    return SerialSettings(path, baudrate, Parity.NONE, 2)


def pattern_points(prefix: str = "") -> list[RegisterPoint]:
    points = [
        RegisterPoint(f"{prefix}unit", H, PATTERN_BASE, DataType.UINT16),
        RegisterPoint(f"{prefix}i16", H, PATTERN_BASE + 1, DataType.INT16),
        RegisterPoint(f"{prefix}f32", H, PATTERN_BASE + 2, DataType.FLOAT32),
        RegisterPoint(f"{prefix}u32", H, PATTERN_BASE + 4, DataType.UINT32),
    ]
    points += [
        RegisterPoint(f"{prefix}coil{i}", Table.COIL, i, DataType.BOOL)
        for i in range(len(COIL_BITS))
    ]
    points += [
        RegisterPoint(f"{prefix}di{i}", Table.DISCRETE, i, DataType.BOOL)
        for i in range(len(DISCRETE_BITS))
    ]
    return points


def expected_pattern(unit: int, prefix: str = "") -> dict[str, float]:
    expected: dict[str, float] = {
        f"{prefix}unit": 4200 + unit,
        f"{prefix}i16": -12345,
        f"{prefix}f32": -1234.5625,
        f"{prefix}u32": 3456789012,
    }
    expected |= {f"{prefix}coil{i}": b for i, b in enumerate(COIL_BITS)}
    expected |= {f"{prefix}di{i}": b for i, b in enumerate(DISCRETE_BITS)}
    return expected


def headcount_points() -> list[RegisterPoint]:
    return [
        RegisterPoint(f"w{w}.{name}", Table.INPUT, 2 * w + k, DataType.UINT16)
        for w in range(len(RATED))
        for k, name in enumerate(("present", "rated"))
    ]


@contextlib.asynccontextmanager
async def attached(*drivers: ModbusRtuDriver) -> AsyncIterator[None]:
    for driver in drivers:
        await driver.connect()
    try:
        yield
    finally:
        for driver in drivers:
            await driver.close()


def ramp_reader(
    name: str, bus: RtuBus, unit: int, offset: int, *, timeout: float
) -> ModbusRtuDriver:
    """A driver of point `r`: the ramp register at `offset`, which holds the value `offset`."""
    point = RegisterPoint("r", H, RAMP_BASE + offset, DataType.UINT16)
    return ModbusRtuDriver(name, bus, unit, [point], timeout=timeout)


def port_open(bus: RtuBus) -> bool:
    return bus.is_open  # a call, so the type checker does not pin the property's value


def values(samples: Sequence[RawSample]) -> dict[str, float | None]:
    return {s.key: s.value for s in samples}


# --- exact values -----------------------------------------------------------------------------


async def test_exact_values_over_a_pty(sim: RtuBusSim) -> None:
    bus = RtuBus(settings(sim.path))
    points = pattern_points()
    driver = ModbusRtuDriver("pattern-1", bus, 1, points, timeout=ANSWERING)
    assert [(r.table, r.start, r.count) for r in driver.plan] == [
        (H, 100, 6),
        (Table.COIL, 0, 8),
        (Table.DISCRETE, 0, 8),
    ]
    async with attached(driver):
        samples = await driver.read()
    assert [s.key for s in samples] == [p.key for p in points]
    assert all(s.quality is Quality.GOOD and s.error is None for s in samples), samples
    assert values(samples) == expected_pattern(1)
    by_key = {s.key: s for s in samples}
    assert by_key["f32"].raw == (0xC49A, 0x5200)
    assert by_key["unit"].raw == (4201,)


async def test_headcount_counter_reads_present_and_rated_staffing(sim: RtuBusSim) -> None:
    counter = sim.slave(HEADCOUNT)
    counter.frozen = True
    bus = RtuBus(settings(sim.path))
    points = headcount_points()
    driver = ModbusRtuDriver("yhbz-headcount", bus, HEADCOUNT, points, timeout=ANSWERING)
    async with attached(driver):
        got = values(await driver.read())
    for w, rated in enumerate(RATED):
        assert got[f"w{w}.rated"] == rated
        assert got[f"w{w}.present"] == counter.inputs[2 * w]
        assert 0 <= counter.inputs[2 * w] <= rated + 2


async def test_frozen_slave_stops_changing_and_thaws(sim: RtuBusSim) -> None:
    bus = RtuBus(settings(sim.path))
    heartbeat = RegisterPoint("heartbeat", H, 0, DataType.UINT16)
    driver = ModbusRtuDriver("pattern-2", bus, 2, [heartbeat], timeout=ANSWERING)
    async with attached(driver):
        sim.slave(2).frozen = True
        first = (await driver.read())[0].value
        await asyncio.sleep(0.2)  # four update periods
        assert (await driver.read())[0].value == first
        sim.slave(2).frozen = False
        await asyncio.sleep(0.2)
        assert (await driver.read())[0].value != first


# --- several slaves on one bus ----------------------------------------------------------------


async def test_several_slaves_share_one_bus_without_crosstalk(sim: RtuBusSim) -> None:
    bus = RtuBus(settings(sim.path))
    drivers = [
        ModbusRtuDriver(f"dev-{unit}", bus, unit, pattern_points(), timeout=ANSWERING)
        for unit in (1, 2, HEADCOUNT)
    ]

    async def poll(driver: ModbusRtuDriver) -> list[dict[str, float | None]]:
        return [values(await driver.read()) for _ in range(5)]

    async with attached(*drivers):
        results = await asyncio.gather(*(poll(d) for d in drivers))
    for driver, reads in zip(drivers, results, strict=True):
        assert all(r == expected_pattern(driver.unit_id) for r in reads)
    # 3 devices x 5 cycles x 3 requests, one at a time on the wire.
    stats = bus.stats()
    assert (stats.transactions, stats.timeouts, stats.errors) == (45, 0, 0)
    assert not bus.is_open  # the last driver to detach closed the port


async def test_a_driver_that_closes_does_not_close_the_port_under_others(sim: RtuBusSim) -> None:
    bus = RtuBus(settings(sim.path))
    one = ModbusRtuDriver("a", bus, 1, pattern_points(), timeout=ANSWERING)
    two = ModbusRtuDriver("b", bus, 2, pattern_points(), timeout=ANSWERING)
    await one.connect()
    await two.connect()
    await one.close()
    await one.close()
    assert port_open(bus)
    assert values(await two.read()) == expected_pattern(2)
    await two.close()
    assert not port_open(bus)
    with pytest.raises(DriverConnectionError):
        await two.read()


async def test_silent_slave_costs_one_timeout_per_cycle_and_others_keep_cadence(
    sim: RtuBusSim,
) -> None:
    timeout, interval, cycles = 0.25, 0.4, 8
    sim.slave(2).fault = Fault.SILENT
    bus = OrderedBus(settings(sim.path))
    # The silent slave's timeout is what the others queue behind; theirs is never reached.
    drivers = {
        unit: ModbusRtuDriver(
            f"dev-{unit}", bus, unit, pattern_points(), timeout=timeout if unit == 2 else ANSWERING
        )
        for unit in (1, 2, HEADCOUNT)
    }
    assert len(drivers[2].plan) == 3  # three requests, yet one timeout per cycle
    outcomes: dict[int, list[str]] = {unit: [] for unit in drivers}
    silent_reads: list[float] = []

    async def poll(unit: int) -> None:
        driver = drivers[unit]
        loop = asyncio.get_running_loop()
        start = loop.time()
        for tick in range(cycles):
            await asyncio.sleep(max(0.0, start + tick * interval - loop.time()))
            began = loop.time()
            try:
                samples = await driver.read()
            except DriverTimeoutError:
                outcomes[unit].append("timeout")
                silent_reads.append(loop.time() - began)
            else:
                good = all(s.quality is Quality.GOOD for s in samples)
                assert values(samples) == expected_pattern(unit)
                outcomes[unit].append("good" if good else "bad")

    async with attached(*drivers.values()):
        await asyncio.gather(*(poll(unit) for unit in drivers))

    # Each request of a healthy read waits for at most one transaction of each other device
    # (counted from its read's call for the first; see OrderedBus): the bus is FIFO and each
    # device has one request out at a time. So it waits out at most one silent timeout, never
    # two, and never another device's whole cycle. Counted from the order of the wire, not
    # timed: the wall-clock time of a read on a starved loop holds the scheduling delays (a
    # healthy read took 0.536 s, over two timeouts, at load 13 on 2 cores). Per request, not
    # per read: a read that a starved loop stretches past the silent slave's next try may
    # meet it again.
    for unit in (1, HEADCOUNT):
        assert outcomes[unit] == ["good"] * cycles
        waits = bus.waits[unit]
        assert len(waits) == cycles * len(drivers[unit].plan)
        assert all(max(behind.values(), default=0) <= 1 for behind in waits), waits
    assert any(behind[2] for unit in (1, HEADCOUNT) for behind in bus.waits[unit]), "not tested"
    assert outcomes[2] == ["timeout"] * cycles
    # It really waited for its reply (a deadline never comes early; how much later it came
    # depends on the machine's load, so there is no upper bound here).
    assert all(d >= timeout for d in silent_reads), silent_reads
    # One request per cycle, the rest not sent: each silent transaction is one timeout.
    assert sim.slave(2).requests == bus.ended.count(2) == cycles
    assert bus.stats().timeouts == cycles


async def test_exception_codes_become_bad_samples(sim: RtuBusSim) -> None:
    bus = RtuBus(settings(sim.path))
    points = [
        RegisterPoint("ok", H, PATTERN_BASE, DataType.UINT16),
        RegisterPoint("hole", Table.INPUT, 50, DataType.UINT16),  # outside the map
    ]
    driver = ModbusRtuDriver("dev-1", bus, 1, points, timeout=ANSWERING)
    async with attached(driver):
        ok, hole = await driver.read()
        assert (ok.quality, ok.value) == (Quality.GOOD, 4201)
        assert hole.quality is Quality.BAD
        assert hole.error == "unit 1: modbus exception 2 (ILLEGAL DATA ADDRESS)"

        sim.slave(1).fault = Fault.EXCEPTION
        sim.slave(1).exception_code = 6
        before = bus.stats()
        samples = await driver.read()
        # An exception is an answer, not a timeout: counted from the bus, not the wall clock.
        after = bus.stats()
        assert after.timeouts == before.timeouts
        assert after.errors > before.errors
        assert all(s.quality is Quality.BAD for s in samples)
        assert all("exception 6 (SERVER DEVICE BUSY)" in (s.error or "") for s in samples)


async def test_garbage_is_bad_for_the_cycle_then_the_next_read_is_exact(sim: RtuBusSim) -> None:
    bus = RtuBus(settings(sim.path))
    driver = ModbusRtuDriver("dev-1", bus, 1, pattern_points(), timeout=0.15)
    # The same slave read again on the same bus once it answers; a timeout it never reaches.
    answering = ModbusRtuDriver("dev-1-again", bus, 1, pattern_points(), timeout=ANSWERING)
    async with attached(driver, answering):
        sim.slave(1).fault = Fault.GARBAGE
        before = bus.stats()
        samples = await driver.read()
        # One garbled request costs one timeout; the rest of the cycle is not sent.
        assert bus.stats().timeouts - before.timeouts == 1
        assert sim.slave(1).requests == 1
        assert all(s.quality is Quality.BAD for s in samples)
        assert all("noise" in (s.error or "") for s in samples)

        sim.slave(1).fault = Fault.NONE
        samples = await answering.read()
        assert all(s.quality is Quality.GOOD for s in samples)
        assert values(samples) == expected_pattern(1)  # no stale shift from the garbage
    assert bus.stats().errors == 1


class HeldReplySim(RtuBusSim):
    """The simulated bus, holding a unit's next reply until the test releases it.

    A late reply is then on the wire when the test says, after the master gave up on it; a
    timer in this loop (a reply `delay`) could not say so: a stall of the loop spanning its
    time and the master's deadline put the reply in the buffer before the deadline was
    judged (then it was in time), and one that kept the simulator from seeing the request
    pushed the reply into the next read.
    """

    def __init__(self, slaves: Sequence[SimSlave]) -> None:
        super().__init__(slaves, interval=0.05, seed=1)
        self.asked: list[tuple[int, float]] = []  # (unit, loop time) of each request answered
        self._held: dict[int, asyncio.Future[bytes]] = {}

    def hold(self, unit: int) -> None:
        """Hold the next reply of `unit`."""
        self._held[unit] = asyncio.get_running_loop().create_future()

    async def held(self, unit: int) -> bytes:
        """Wait until the held reply of `unit` is there (its request came); return it."""
        return await asyncio.wait_for(asyncio.shield(self._held[unit]), ANSWERING)

    def release(self, unit: int) -> None:
        """Send the held reply of `unit` now."""
        self._send(self._held.pop(unit).result())

    def release_unread(self, unit: int, copies: int = 1) -> None:
        """Send the held reply of `unit` (`copies` times) and block until it is on the tty, unread.

        The loop does not run meanwhile: the reply waits in the tty's receive buffer, as on a
        busy machine whose loop has not got round to it.
        """
        self._send(self._held.pop(unit).result() * copies)
        on_tty = select.select([self._endpoint()._slave], [], [], ANSWERING)[0]
        assert on_tty, "the reply never reached the tty"

    def _send_later(self, reply: bytes, think: float) -> None:
        unit = reply[0]
        self.asked.append((unit, asyncio.get_running_loop().time()))
        held = self._held.get(unit)
        if held is not None and not held.done():
            held.set_result(reply)
        else:
            super()._send_later(reply, think)


@pytest.fixture
async def held_sim() -> AsyncIterator[HeldReplySim]:
    async with HeldReplySim([pattern_slave(1), pattern_slave(2)]) as running:
        yield running


async def test_late_reply_is_not_taken_for_another_units_answer(held_sim: HeldReplySim) -> None:
    # Same function, same size: only the unit address tells the late reply apart. Unit 1
    # answers the read of 5 after the master gave up on it, while the read of 7 from unit 2
    # waits, just before unit 2's own answer.
    sim = held_sim
    bus = RtuBus(settings(sim.path))
    five = ramp_reader("five", bus, 1, 5, timeout=0.1)
    seven = ramp_reader("seven", bus, 2, 7, timeout=ANSWERING)
    sim.hold(1)
    sim.hold(2)
    async with attached(five, seven):
        with pytest.raises(DriverTimeoutError):
            await five.read()
        reading = asyncio.create_task(seven.read())
        answer = await sim.held(2)  # the read of 7 is on the wire, waiting for its answer
        late = await sim.held(1)
        assert (late[0], answer[0]) == (1, 2)
        assert late[1:] != answer[1:]  # 5, not 7 ...
        assert late[1:3] == answer[1:3]  # ... but the same function and byte count
        sim.release(1)
        sim.release(2)
        assert values(await reading) == {"r": 7}


LATE_TIMEOUT = 0.1  # of the read whose reply comes late


@contextlib.asynccontextmanager
async def five_timed_out(
    sim: HeldReplySim,
) -> AsyncIterator[tuple[RtuBus, ModbusRtuDriver, float]]:
    """Unit 1's read of 5 has timed out, its reply held.

    Yields the bus, a reader of 7 from unit 1 and the loop time before 5 was asked for.
    """
    bus = RtuBus(settings(sim.path))
    five = ramp_reader("five", bus, 1, 5, timeout=LATE_TIMEOUT)
    seven = ramp_reader("seven", bus, 1, 7, timeout=ANSWERING)
    sim.hold(1)
    async with attached(five, seven):
        asked = asyncio.get_running_loop().time()
        with pytest.raises(DriverTimeoutError):
            await five.read()
        yield bus, seven, asked


async def test_late_reply_is_not_taken_for_the_same_units_next_answer(
    held_sim: HeldReplySim,
) -> None:
    # Nothing but timing tells these replies apart. After a unit timed out, the bus asks it
    # again only once one more timeout has passed, and lets a reply that late pass first.
    sim = held_sim
    timeout = LATE_TIMEOUT
    async with five_timed_out(sim) as (bus, seven, asked):
        # The late reply goes on the wire in the step that judged the deadline; the read of
        # 7 is asked for in that step too, so no stall of the loop can come in between.
        sim.release(1)
        assert values(await seven.read()) == {"r": 7}
    assert bus.stats().stray_bytes == 7  # the late reply, dropped
    # Unit 1 was asked for 7 no sooner than one timeout after the deadline of 5 (a deadline
    # never comes early; 1 ms covers the loop's clock resolution and the sums' rounding): a
    # reply from unit 1 until then would have been let pass too. Without the wait the bus
    # asks at once, 2 ms (t3.5) after the deadline.
    (first, again) = [t for unit, t in sim.asked if unit == 1]
    assert first >= asked
    assert again >= asked + 2 * timeout - 0.001, (again - asked, 2 * timeout)


async def test_a_late_reply_the_loop_has_not_read_is_not_the_next_answer(
    held_sim: HeldReplySim,
) -> None:
    # Unit 1 answers the read of 5 after the master's wait for a late reply is over too; on a
    # busy machine the loop has not read it when the read of 7 from unit 1 begins. Same unit,
    # function and byte count: only that it came before the request tells it apart, so taken
    # in after the request it was the answer (5 reported as 7's value, GOOD).
    sim = held_sim
    async with five_timed_out(sim) as (bus, seven, _):
        await asyncio.sleep(2 * LATE_TIMEOUT)  # past the wait for a late reply of unit 1
        sim.release_unread(1)  # the loop does not run until the read of 7 has begun
        assert values(await seven.read()) == {"r": 7}
    assert bus.stats().stray_bytes == 7  # the late reply, dropped


async def test_a_late_backlog_larger_than_one_read_is_not_the_next_answer(
    held_sim: HeldReplySim,
) -> None:
    # As above with more than a tty hands over in one read (4 KiB): all of it came before the
    # request, none of it is the answer.
    sim = held_sim
    copies = 1200  # 8400 bytes
    async with five_timed_out(sim) as (bus, seven, _):
        await asyncio.sleep(2 * LATE_TIMEOUT)  # past the wait for a late reply of unit 1
        sim.release_unread(1, copies)
        assert values(await seven.read()) == {"r": 7}
    assert bus.stats().stray_bytes == 7 * copies  # the backlog, dropped


async def test_a_bus_on_a_descriptor_above_1023_reads(sim: RtuBusSim) -> None:
    # An agent with hundreds of sockets and files open gets descriptors >= 1024 for the
    # ports it opens; select refuses those, and every read failed with ValueError.
    bus = RtuBus(settings(sim.path))
    driver = ModbusRtuDriver("pattern-1", bus, 1, pattern_points(), timeout=ANSWERING)
    ours = descriptors_on(sim.pty_path)  # the simulator's own end of the pty
    with low_fds_taken():
        async with attached(driver):
            assert min(descriptors_on(sim.pty_path) - ours) >= SELECT_LIMIT
            first = await driver.read()
            second = await driver.read()
    assert values(first) == values(second) == expected_pattern(1)


async def test_a_reply_in_time_counts_though_the_master_looked_after_its_deadline() -> None:
    # On a loaded machine the agent's process may not run for longer than a timeout. The
    # slave (its own thread here, its own process in the field) answered at once; when the
    # agent runs again its reply is whole in the receive buffer and the deadline has passed.
    # The reply is the answer: nothing else was sent meanwhile, and it matches the request.
    master, slave = os.openpty()
    answered = threading.Event()

    def answer_at_once() -> None:
        request = os.read(master, 8)
        assert request == build_read_frame(1, ReadRequest(H, PATTERN_BASE, 1, ()))
        os.write(master, rtu_frame(1, bytes([3, 2]) + (4201).to_bytes(2, "big")))
        answered.set()

    responder = threading.Thread(target=answer_at_once, name="rtu-slave")
    bus = RtuBus(settings(os.ttyname(slave)))
    timeout = 0.1
    driver = ModbusRtuDriver(
        "dev-1", bus, 1, [RegisterPoint("u", H, PATTERN_BASE, DataType.UINT16)], timeout=timeout
    )
    try:
        async with attached(driver):
            responder.start()
            reading = asyncio.create_task(driver.read())
            await asyncio.sleep(0)  # the task sends its request and waits for the reply
            # The agent's process is not scheduled: the loop does not run until the slave has
            # answered and the deadline has passed.
            assert answered.wait(5), "the request never came"
            time.sleep(timeout)  # the stall is the point
            assert values(await reading) == {"u": 4201}
            assert bus.stats().timeouts == 0
    finally:
        responder.join(5)
        os.close(master)
        os.close(slave)


async def test_lost_port_raises_and_the_bus_reopens_on_connect(tmp_path: Path) -> None:
    link = tmp_path / "ttyRTU"
    point = [RegisterPoint("u", H, PATTERN_BASE, DataType.UINT16)]
    async with RtuBusSim([pattern_slave(1)], link=link) as first:
        assert first.path == str(link)
        bus = RtuBus(settings(str(link)))
        driver = ModbusRtuDriver("dev-1", bus, 1, point, timeout=ANSWERING)
        await driver.connect()
        assert values(await driver.read()) == {"u": 4201}
    assert not link.exists()
    with pytest.raises(DriverConnectionError):
        await driver.read()
    async with RtuBusSim([pattern_slave(1)], link=link):
        await driver.connect()  # the same symlink now points at a new pty
        assert values(await driver.read()) == {"u": 4201}
        await driver.close()


async def test_missing_port_and_read_before_connect() -> None:
    bus = RtuBus(settings("/dev/does-not-exist"))
    driver = ModbusRtuDriver("dev-1", bus, 1, pattern_points())
    with pytest.raises(DriverConnectionError):
        await driver.read()
    with pytest.raises(DriverConnectionError, match="does-not-exist"):
        await driver.connect()
    await driver.close()
    with pytest.raises(ValueError, match="unit id"):
        ModbusRtuDriver("dev-0", bus, 0, [])
    with pytest.raises(ValueError, match="timeout"):
        ModbusRtuDriver("dev-1", bus, 1, [], timeout=0)


def test_driver_satisfies_the_protocol() -> None:
    driver: Driver = ModbusRtuDriver("dev-1", RtuBus(settings("/dev/null")), 1, [])
    assert driver.device_id == "dev-1"


# --- bus timing on a simulated 19,200-baud line (the G10 rate itself: bench/rtu.py) -----------


async def test_measured_utilization_matches_the_timing_model_on_a_throttled_line() -> None:
    async with RtuBusSim([pattern_slave(1), pattern_slave(2)], baudrate=19200) as line:
        bus = RtuBus(settings(line.path, 19200))
        ten = [RegisterPoint(f"r{i}", H, RAMP_BASE + i, DataType.UINT16) for i in range(10)]
        busy = ModbusRtuDriver("busy", bus, 1, ten, timeout=ANSWERING)
        theoretical = 1 / rtu_transaction_seconds(busy.plan[0], bus.settings, turnaround=0.0)
        assert theoretical == pytest.approx(43.6, abs=0.1)  # performance.md, 19,200 baud
        loop = asyncio.get_running_loop()
        async with attached(busy):
            # The rate itself is goal G10 and lives in bench/rtu.py; here: reads are right.
            samples = await busy.read()
            assert [s.value for s in samples] == list(range(10))

        # Polled devices: the bus accounts every transaction, and the busy time it measures is
        # at least what the model computes for them: the simulated line is throttled to its
        # baud rate, so the wire time is a floor whatever the load. Above the floor the
        # measured time also holds the scheduling delays of this machine, so how close it
        # comes to the model is a timing goal (bench/rtu.py), not a fact this test can check.
        one = ModbusRtuDriver("one", bus, 1, ten, timeout=ANSWERING)
        two = ModbusRtuDriver("two", bus, 2, ten, timeout=ANSWERING)
        window = 1.5

        async def poll(driver: ModbusRtuDriver, interval: float, begin: float) -> None:
            for tick in range(round(window / interval)):
                await asyncio.sleep(max(0.0, begin + tick * interval - loop.time()))
                await driver.read()

        async with attached(one, two):
            before = bus.stats()
            begin = loop.time()
            await asyncio.gather(poll(one, 0.05, begin), poll(two, 0.1, begin))
            await asyncio.sleep(max(0.0, begin + window - loop.time()))
            after = bus.stats()
        computed = bus.computed_utilization([one.plan, two.plan], [0.05, 0.1], turnaround=0.0)
        assert computed == pytest.approx(0.229 * 3, rel=0.01)
        reads = round(window / 0.05) + round(window / 0.1)
        assert (after.transactions - before.transactions, after.timeouts) == (reads, 0)
        # Both devices poll for the whole window, so the model's busy time is computed * window.
        busy_time = after.busy_seconds - before.busy_seconds
        assert busy_time >= computed * window * 0.95, (busy_time, computed * window)
        assert 0 < after.utilization_since(before) <= 1


async def test_command_line_simulator(tmp_path: Path) -> None:
    link = tmp_path / "ttyRTU"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulators.rtu_bus",
        "--link",
        str(link),
        "--units",
        "1",
        "--fault",
        "1=exception:6",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        printed = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode().strip()
        assert printed.startswith("/dev/pts/")
        assert link.resolve() == Path(printed)
        bus = RtuBus(settings(str(link)))
        counter = ModbusRtuDriver("hc", bus, HEADCOUNT, headcount_points(), timeout=ANSWERING)
        failing = ModbusRtuDriver("one", bus, 1, [RegisterPoint("u", H, 100, DataType.UINT16)])
        async with attached(counter, failing):
            rated = {s.key: s.value for s in await counter.read() if s.key.endswith("rated")}
            (exception,) = await failing.read()
        assert rated == {f"w{w}.rated": r for w, r in enumerate(RATED)}
        assert "exception 6" in (exception.error or "")
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    assert not link.exists()
