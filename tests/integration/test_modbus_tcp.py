"""Modbus TCP driver against the real pymodbus tank farm on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from typing import TYPE_CHECKING

import pytest

from drivers.base import Driver, DriverConnectionError, DriverTimeoutError, Quality, RawSample
from drivers.modbus.codec import DataType, Order, Table
from drivers.modbus.plan import RegisterPoint
from drivers.modbus.tcp import ModbusTcpDriver
from simulators.tankfarm import TankFarmServer, pattern_map, serve_tankfarm, tank_map
from tests.support.broker import free_port
from tests.support.connected import connected

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

HOST = "127.0.0.1"
UNIT = 1


@pytest.fixture
async def farm() -> AsyncIterator[TankFarmServer]:
    async with await serve_tankfarm(HOST, 0, tanks=2, seed=7, interval=0.05) as running:
        yield running


def driver_for(
    port: int,
    points: Sequence[RegisterPoint],
    *,
    timeout: float = 1.0,
    max_gap: int = 10,
) -> contextlib.AbstractAsyncContextManager[ModbusTcpDriver]:
    return connected(
        ModbusTcpDriver("dev-1", HOST, port, UNIT, points, timeout=timeout, max_gap=max_gap)
    )


# Addresses the tank farm does not have: every one reads BAD (exception 2).
MISSING = (
    RegisterPoint("nope.holding", Table.HOLDING, 5000, DataType.UINT16),
    RegisterPoint("nope.input", Table.INPUT, 4000, DataType.FLOAT32),
    RegisterPoint("nope.coil", Table.COIL, 3000, DataType.BOOL),
)


async def test_test_pattern_decodes_exactly(farm: TankFarmServer) -> None:
    pattern = pattern_map()
    covered = {(s.point.dtype, s.point.byte_order, s.point.word_order) for s in pattern}
    for dtype in (DataType.INT16, DataType.UINT16, DataType.INT32, DataType.UINT32):
        assert {(dtype, bo, wo) for bo in Order for wo in Order} <= covered
    assert {(DataType.FLOAT32, bo, wo) for bo in Order for wo in Order} <= covered
    assert {(DataType.FLOAT64, bo, wo) for bo in Order for wo in Order} <= covered
    assert {s.point.table for s in pattern} == set(Table)

    async with driver_for(farm.port, [s.point for s in pattern]) as driver:
        samples = await driver.read()

    assert [s.key for s in samples] == [p.point.key for p in pattern]
    for sim, sample in zip(pattern, samples, strict=True):
        assert sample.quality is Quality.GOOD, sample
        assert sample.error is None
        assert sample.value == sim.expected, sample
        assert len(sample.raw) == sim.point.count


async def test_known_wire_registers_and_values(farm: TankFarmServer) -> None:
    by_key = {s.point.key: s.point for s in pattern_map()}
    keys = [
        "test.float32.little_big",
        "test.int32.big_little",
        "test.float64.little_little",
        "test.status.bit15",
        "test.coil.0",
        "test.discrete.0",
    ]
    async with driver_for(farm.port, [by_key[k] for k in keys]) as driver:
        got = {s.key: (s.value, s.raw) for s in await driver.read()}
    assert got == {
        "test.float32.little_big": (-1234.5625, (0x9AC4, 0x0052)),
        "test.int32.big_little": (-123456789, (0x32EB, 0xF8A4)),
        "test.float64.little_little": (-9876.54321, (0x6EC0, 0xE787, 0x454A, 0xC3C0)),
        "test.status.bit15": (1.0, (0xA5C3,)),
        "test.coil.0": (1.0, (1,)),
        "test.discrete.0": (0.0, (0,)),
    }


async def test_one_request_per_planned_read(farm: TankFarmServer) -> None:
    points = [s.point for s in pattern_map() + tank_map(2)]
    async with driver_for(farm.port, points) as driver:
        # holding: tanks 0..15, pattern 1000..1048; input: tanks, pattern; coils; discretes
        assert len(driver.plan) == 6
        before = farm.request_count
        await driver.read()
        assert farm.request_count - before == len(driver.plan)
        await driver.read()
        assert farm.request_count - before == 2 * len(driver.plan)


async def test_nonexistent_addresses_are_bad_samples(farm: TankFarmServer) -> None:
    points = [
        RegisterPoint("level", Table.HOLDING, 0, DataType.FLOAT32),
        *MISSING,
        RegisterPoint("nope.discrete", Table.DISCRETE, 3000, DataType.BOOL),
    ]
    async with driver_for(farm.port, points) as driver:
        samples = await driver.read()
    assert samples[0].quality is Quality.GOOD
    for sample in samples[1:]:
        assert sample.quality is Quality.BAD
        assert sample.value is None
        assert sample.error is not None
        assert "exception 2" in sample.error


async def test_reading_through_a_hole_fails_the_whole_request(farm: TankFarmServer) -> None:
    # Two tanks: holding 0..19 exist, 20..999 do not.
    points = [
        RegisterPoint("last", Table.HOLDING, 19, DataType.UINT16),
        RegisterPoint("hole", Table.HOLDING, 25, DataType.UINT16),
    ]
    async with driver_for(farm.port, points, max_gap=10) as driver:
        assert [s.quality for s in await driver.read()] == [Quality.BAD, Quality.BAD]
    async with driver_for(farm.port, points, max_gap=0) as driver:
        assert [s.quality for s in await driver.read()] == [Quality.GOOD, Quality.BAD]


async def test_server_loss_raises_then_reconnect_recovers(farm: TankFarmServer) -> None:
    point = RegisterPoint("level", Table.HOLDING, 0, DataType.FLOAT32)
    port = farm.port
    async with driver_for(port, [point], timeout=0.3) as driver:
        assert (await driver.read())[0].quality is Quality.GOOD
        await farm.stop()
        with pytest.raises((DriverConnectionError, DriverTimeoutError)):
            await driver.read()
        with pytest.raises(DriverConnectionError):
            await driver.connect()

        async with await serve_tankfarm(HOST, port, tanks=2, seed=7) as again:
            await driver.connect()
            samples = await driver.read()
            assert samples[0].quality is Quality.GOOD
            assert again.request_count == 1


async def test_read_before_connect_raises_and_close_is_idempotent() -> None:
    point = RegisterPoint("x", Table.HOLDING, 0, DataType.UINT16)
    driver = ModbusTcpDriver("dev-1", HOST, 1, UNIT, [point])
    assert driver.device_id == "dev-1"
    assert not driver.connected
    with pytest.raises(DriverConnectionError):
        await driver.read()
    await driver.close()
    await driver.close()


async def test_refused_connection_raises() -> None:
    driver = ModbusTcpDriver("dev-1", HOST, free_port(), UNIT, [], timeout=0.5)
    with pytest.raises(DriverConnectionError):
        await driver.connect()


class Streams:
    """Keeps every stream writer a test server opens, so the test can close them all."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task[None]] = set()

    async def close(self, server: asyncio.Server) -> None:
        server.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for writer in self.writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


class SilentDevice(Streams):
    """Accepts connections and never answers, like a device that hung."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        await reader.read()


class SlowFirstReply(Streams):
    """A TCP proxy that holds back the first reply from upstream by `delay` seconds."""

    def __init__(self, upstream_port: int, delay: float) -> None:
        super().__init__()
        self.upstream_port = upstream_port
        self.delay = delay

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        up_reader, up_writer = await asyncio.open_connection(HOST, self.upstream_port)
        self.writers.append(up_writer)
        down = asyncio.create_task(self.pump(up_reader, writer, self.delay))
        self.tasks.add(down)
        await self.pump(reader, up_writer, 0.0)

    @staticmethod
    async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, delay: float) -> None:
        first = True
        while chunk := await src.read(4096):
            if first and delay:
                await asyncio.sleep(delay)
            first = False
            dst.write(chunk)
            await dst.drain()


async def test_silent_device_times_out() -> None:
    device = SilentDevice()
    server = await asyncio.start_server(device.handle, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    point = RegisterPoint("x", Table.HOLDING, 0, DataType.UINT16)
    try:
        async with driver_for(port, [point], timeout=0.2) as driver:
            started = time.monotonic()
            with pytest.raises(DriverTimeoutError):
                await driver.read()
            assert time.monotonic() - started < 2.0
    finally:
        await device.close(server)


async def test_late_reply_does_not_poison_the_next_read(farm: TankFarmServer) -> None:
    proxy = SlowFirstReply(farm.port, delay=0.5)
    server = await asyncio.start_server(proxy.handle, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    expected = {s.point.key: s.expected for s in pattern_map()}
    points = [s.point for s in pattern_map() if s.point.table is Table.HOLDING]
    try:
        async with driver_for(port, points, timeout=0.2) as driver:
            with pytest.raises(DriverTimeoutError):
                await driver.read()
            await asyncio.sleep(0.5)  # the stale reply arrives while nothing is asked
            samples = await driver.read()
            assert all(s.quality is Quality.GOOD for s in samples)
            assert {s.key: s.value for s in samples} == {p.key: expected[p.key] for p in points}
    finally:
        await proxy.close(server)


class MisshapenReplies(Streams):
    """A device whose every reply is the right one, data 1, 2, 3..., bent by `bend`:
    (function code, byte count, data) of a good reply -> what is sent instead."""

    def __init__(self, bend: Callable[[int, int, bytes], tuple[int, int, bytes]]) -> None:
        super().__init__()
        self.bend = bend

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                tid, _protocol, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                function, _start, count = struct.unpack(
                    ">BHH", await reader.readexactly(length - 1)
                )
                if function in {1, 2}:
                    data = bytes((count + 7) // 8)
                else:
                    data = b"".join(struct.pack(">H", n) for n in range(1, count + 1))
                function, byte_count, data = self.bend(function, len(data), data)
                pdu = bytes([function, byte_count]) + data
                writer.write(struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit) + pdu)
                await writer.drain()


MISSHAPEN = {
    # A gateway that answers a holding-register read with input registers (or the reverse):
    # another table's numbers.
    "another function": lambda function, size, data: (7 - function, size, data),
    "more registers than asked": lambda function, size, data: (function, size + 4, data + bytes(4)),
    "a byte count that is no whole register": lambda f, size, data: (f, size + 1, data + b"\0"),
    "more coil bytes than asked": lambda function, size, data: (function, size + 1, data + b"\0"),
}


@pytest.mark.parametrize("bend", MISSHAPEN, ids=list(MISSHAPEN))
async def test_a_reply_not_shaped_like_the_request_is_bad(bend: str) -> None:
    """The reply's function code and byte count must be the request's, as the RTU master
    checks (`rtu_frame.find_reply`): a reply of function 4 to a function 3 read, 5 registers
    to a read of 3, or a byte count of 7 were decoded as GOOD readings (pymodbus matches a
    reply by transaction id alone)."""
    device = MisshapenReplies(MISSHAPEN[bend])
    server = await asyncio.start_server(device.handle, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    if bend == "more coil bytes than asked":
        points = [RegisterPoint(f"c{i}", Table.COIL, i, DataType.BOOL) for i in range(3)]
    else:
        points = [
            RegisterPoint("f", Table.HOLDING, 0, DataType.FLOAT32),
            RegisterPoint("u", Table.HOLDING, 2, DataType.UINT16),
            RegisterPoint("i", Table.INPUT, 0, DataType.UINT16),
        ]
    try:
        async with driver_for(port, points, timeout=0.5) as driver:
            for samples in (await driver.read(), (await driver.read_columns()).samples()):
                assert [(s.key, s.quality, s.value) for s in samples] == [
                    (p.key, Quality.BAD, None) for p in points
                ]
                assert all("reply" in str(s.error) for s in samples), samples
    finally:
        await device.close(server)


def test_driver_satisfies_the_protocol() -> None:
    driver: Driver = ModbusTcpDriver("dev-1", HOST, 502, UNIT, [])
    assert driver.device_id == "dev-1"


def _without_raw(samples: Sequence[RawSample]) -> list[tuple[object, ...]]:
    return [(s.key, s.value, s.quality, s.error, s.flags) for s in samples]


async def test_a_columnar_read_gives_the_samples_of_a_read(farm: TankFarmServer) -> None:
    # The pattern (every type and word order, all four tables) does not move; so do the
    # BAD points beside it: missing addresses, and a read through a hole.
    points = [
        *(s.point for s in pattern_map()),
        *MISSING,
        RegisterPoint("hole.last", Table.HOLDING, 19, DataType.UINT16),
        RegisterPoint("hole.hole", Table.HOLDING, 25, DataType.FLOAT32),
    ]
    async with driver_for(farm.port, points) as driver:
        samples = await driver.read()
        columns = await driver.read_columns()
    assert columns.keys == tuple(p.key for p in points)
    assert _without_raw(columns.samples()) == _without_raw(samples)
    assert [s.key for s in columns.other_samples()] == [
        s.key for s in samples if columns.values[columns.keys.index(s.key)] is None
    ]
    # Big-endian numbers come as columns (pymodbus handed over the reply's bytes), the rest
    # as samples: other word orders, bits, and every point of a failed request.
    big = {
        s.point.key
        for s in pattern_map()
        if s.point.byte_order is Order.BIG
        and s.point.word_order is Order.BIG
        and s.point.dtype is not DataType.BOOL
    }
    assert big
    for key, value in zip(columns.keys, columns.values, strict=True):
        assert (value is not None) == (key in big), key
    bad = {"nope.holding", "nope.input", "nope.coil", "hole.last", "hole.hole"}
    assert bad <= set(columns.others)
    assert all(columns.others[key].quality is Quality.BAD for key in bad)


async def test_columnar_reads_of_a_moving_farm_keep_each_request_time(
    farm: TankFarmServer,
) -> None:
    points = [s.point for s in tank_map(2)]
    async with driver_for(farm.port, points) as driver:
        columns = await driver.read_columns()
    samples = columns.samples()
    assert [s.key for s in samples] == [p.key for p in points]
    assert all(s.quality is Quality.GOOD and s.value is not None for s in samples)
    assert len(set(columns.t_wall)) <= len(driver.plan)
