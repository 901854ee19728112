"""From a site map to running drivers: `build_driver` per driver, shared RTU buses, probe.

The devices are the project's simulators in this test's loop (a Modbus RTU bus and gas
analyzers on pseudo terminals, the OPC UA slope server on loopback); drivers, pollers and
buses are the ones the agent runs, built from a parsed site map.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import structlog

from drivers.base import Buses
from drivers.modbus.rtu import ModbusRtuDriver
from drivers.modbus.rtu_bus import RtuBus
from drivers.modbus.tcp import ModbusTcpDriver
from drivers.opcua import OpcUaDriver, ReadMode, SecurityMode
from drivers.serial.ascii import SerialAsciiDriver
from drivers.serial.checksum import Checksum
from drivers.serial.framing import Delimited, FixedLength
from edge_agent.cli.probe import probe_site
from edge_agent.config import DeviceConfig, SiteConfig, parse_site_config
from edge_agent.core.points import ResolvedPoint, resolve_points
from edge_agent.kinds import KINDS, build_driver
from edge_agent.kinds.serial import SerialDevice
from edge_agent.kinds.serial.kind import framing_of
from edge_agent.shell.buses import RtuBuses, report_utilization
from edge_agent.shell.poller import DevicePoller, Sink, queue_sink
from hostkit.backoff import backoff_delays
from simulators.gas_analyzer import GasAnalyzerSim
from simulators.rtu_bus import RtuBusSim
from simulators.slope_opcua import SlopeServer
from specs.records import Quality, Reading
from tests.support.answering import ANSWERING_MAP
from tests.support.config_files import site_head
from tests.support.ordered_bus import OneOrderedBus, OrderedBus
from tests.support.pollers import device_poller, polled_points

HEAD = (
    site_head("YHBZ")
    + """\
devices:
"""
)
# A pty keeps no parity across reopening: the test buses run 8N2.
RTU_LINE = "baudrate: 19200, parity: N, stopbits: 2"


def rtu_devices(port: str, *, poll: str = "200ms", timeout: str = "150ms") -> str:
    """Slaves 2 (silent in `rtu_sim`), 1 and 3; `timeout` is the silent one's, which the test
    waits out: the others answer, and their timeout is one no stall of this machine reaches."""
    return "".join(
        f"  - {{id: {name}, driver: modbus_rtu, port: {port}, {RTU_LINE}, unit_id: {unit},\n"
        f"     poll: {poll}, timeout: {timeout if unit == 2 else ANSWERING_MAP}, points: [\n"
        f"       {{point: {code}-A, quota: YHBZ-PC, address: {{table: holding, start: 210,"
        " type: uint16}},\n"
        f"       {{point: {code}-B, quota: YHBZ-PR, scale: 0.1,\n"
        "        address: {table: holding, start: 100, type: uint16}}]}\n"
        for name, unit, code in (("silent-2", 2, "R2"), ("slave-1", 1, "R1"), ("slave-3", 3, "R3"))
    )


def gas_device(port: str, *, extra: str = 'request: "RD\\r\\n", checksum: xor') -> str:
    return (
        f"  - {{id: gas-{port.rsplit('/', 1)[-1]}, driver: serial, port: {port}, poll: 100ms,"
        f" {extra},\n"
        "     points: [{point: G-TOX-" + port.rsplit("/", 1)[-1] + ", quota: WHP-TOX,"
        " pattern: 'H2S=(?P<value>[0-9.]+)'}]}\n"
    )


def parse(devices: str, base: Path = Path("/etc/ganzhi")) -> SiteConfig:
    return parse_site_config(HEAD + devices, "site.yaml", base)


def points_of(config: SiteConfig, device_id: str) -> list[ResolvedPoint]:
    return [p for p in resolve_points(config) if p.device_id == device_id]


def poller_of(
    config: SiteConfig,
    device: DeviceConfig,
    buses: Buses,
    *,
    sink: Sink,
    backoff: Callable[[], Iterator[float]],
) -> DevicePoller:
    """`device`'s poller as the runtime builds it, its driver on `buses`."""
    points = points_of(config, device.id)
    driver = build_driver(device, points, buses=buses)
    return device_poller(
        driver, polled_points(points), interval=device.poll, sink=sink, backoff=backoff
    )


async def run_later(delay: float, poller: DevicePoller) -> None:
    await asyncio.sleep(delay)
    await poller.run()


@contextlib.asynccontextmanager
async def polling(
    config: SiteConfig, buses: Buses, *, head_start: float = 0.0, backoff: float = 0.5
) -> AsyncIterator[tuple[list[DevicePoller], asyncio.Queue[Reading]]]:
    """One poller task per device, as the agent runs them; cancelled on exit.

    The first device's poller starts `head_start` seconds before the others, so that its
    requests are ahead of theirs in a bus queue on every cycle it polls in. A device whose
    read failed is tried again after `backoff` seconds, every time.
    """
    queue: asyncio.Queue[Reading] = asyncio.Queue()
    pollers = [
        poller_of(
            config,
            device,
            buses,
            sink=queue_sink(queue),
            backoff=lambda: itertools.repeat(backoff),
        )
        for device in config.devices
    ]
    tasks = [asyncio.create_task(pollers[0].run())]
    tasks += [asyncio.create_task(run_later(head_start, p)) for p in pollers[1:]]
    try:
        yield pollers, queue
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def drain(queue: asyncio.Queue[Reading]) -> list[Reading]:
    return [queue.get_nowait() for _ in range(queue.qsize())]


# --- build_driver ------------------------------------------------------------------------------


def test_opcua_servers_are_retried_at_least_once_per_keepalive() -> None:
    config = parse(
        "  - {id: slope, driver: opcua, endpoint: 'opc.tcp://h', keepalive: 2s,\n"
        "     points: [{point: S1, quota: BP-GX, node: 'ns=2;s=X'}]}\n"
        + rtu_devices("/dev/ttyUSB0")
    )
    slope, rtu = (
        backoff_delays(initial=b.initial, cap=b.cap)
        for b in (KINDS.bind(d, []).backoff for d in config.devices[:2])
    )
    assert max(itertools.islice(slope, 50)) <= 2.0
    assert max(itertools.islice(rtu, 50)) > 2.0, "other devices back off to 30 s"


def test_build_driver_makes_the_driver_of_each_device(tmp_path: Path) -> None:
    config = parse(
        "  - {id: plc, driver: modbus_tcp, host: 10.0.0.9, poll: 1s, points: [\n"
        "     {point: T1, quota: WHP-LT, address: {table: holding, start: 0, type: float32}}]}\n"
        + rtu_devices("/dev/ttyUSB0")
        + "  - {id: slope, driver: opcua, endpoint: 'opc.tcp://10.0.0.5', mode: poll,\n"
        "     security: {mode: Sign, cert: c.pem, key: k.pem}, username: u, password: p,\n"
        "     points: [{point: S1, quota: BP-GX, node: 'ns=2;s=Slope.G1.X'}]}\n"
        + gas_device("/dev/ttyS1", extra="length: 20, start: '$', checksum: lrc")
        + gas_device("/dev/ttyS2", extra="delimiter: ';'"),
        tmp_path,
    )
    buses = RtuBuses()
    drivers = {d.id: build_driver(d, points_of(config, d.id), buses=buses) for d in config.devices}
    assert isinstance(drivers["plc"], ModbusTcpDriver)
    rtu = [drivers[name] for name in ("silent-2", "slave-1", "slave-3")]
    assert all(isinstance(d, ModbusRtuDriver) for d in rtu)
    assert isinstance(rtu[0], ModbusRtuDriver)
    assert isinstance(rtu[1], ModbusRtuDriver)
    assert rtu[0].bus is rtu[1].bus, "one bus per port, shared by its slaves"
    assert len(buses) == 1
    assert (rtu[0].unit_id, rtu[0].bus.settings.baudrate, str(rtu[0].bus.settings.parity)) == (
        2,
        19200,
        "N",
    )
    # 110 unused registers apart, more than max_gap 8: two requests.
    assert [(r.table, r.start, r.count) for r in rtu[0].plan] == [
        ("holding", 100, 1),
        ("holding", 210, 1),
    ]
    slope = drivers["slope"]
    assert isinstance(slope, OpcUaDriver)
    assert (slope.endpoint, slope.mode) == ("opc.tcp://10.0.0.5:4840", ReadMode.POLL)
    assert [(p.key, p.node_id) for p in slope.points] == [("S1", "ns=2;s=Slope.G1.X")]
    security = slope._security
    assert security is not None
    assert (security.cert, security.mode) == (tmp_path / "c.pem", SecurityMode.SIGN)
    fixed, delimited = drivers["gas-ttyS1"], drivers["gas-ttyS2"]
    assert isinstance(fixed, SerialAsciiDriver)
    assert isinstance(delimited, SerialAsciiDriver)
    assert fixed.free_running
    assert fixed._checksum is not None
    assert fixed._checksum.kind is Checksum.LRC
    devices = {d.id: d for d in config.devices}
    ascii_fixed, ascii_delimited = devices["gas-ttyS1"], devices["gas-ttyS2"]
    assert isinstance(ascii_fixed, SerialDevice)
    assert isinstance(ascii_delimited, SerialDevice)
    assert framing_of(ascii_fixed) == FixedLength(20, b"$")
    assert framing_of(ascii_delimited) == Delimited(b";")
    # Without a registry (edge-agent probe of one device) a slave gets a bus of its own.
    alone = build_driver(config.devices[1], points_of(config, "silent-2"))
    assert isinstance(alone, ModbusRtuDriver)
    assert isinstance(alone.bus, RtuBus)
    assert alone.bus is not rtu[0].bus


# --- shared RTU bus ----------------------------------------------------------------------------


async def test_slaves_share_one_bus_and_a_silent_one_is_bad_without_stalling_them(
    rtu_sim: RtuBusSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The agent's own RtuBuses, its bus an OrderedBus (the real bus, noting the wire's order):
    # what the test checks is counted from that order and the pollers' cycles, not timed. A
    # cycle the silent slave is tried in costs 150 ms + 4 reads of ~13 ms: room in 300 ms.
    monkeypatch.setattr("edge_agent.shell.buses.RtuBus", OrderedBus)
    config = parse(rtu_devices(rtu_sim.path, poll="300ms", timeout="150ms"))
    buses = RtuBuses()
    with structlog.testing.capture_logs() as logs:
        async with polling(config, buses, backoff=1.0) as (pollers, queue):
            (bus,) = buses  # one bus for the port's three slaves
            assert isinstance(bus, OrderedBus)
            reporter = asyncio.create_task(report_utilization(buses, every=0.5))

            def reported() -> Sequence[Mapping[str, object]]:
                return [e for e in logs if e["event"] == "rtu_bus_utilization"]

            # Until the silent slave was tried 4 times and the reports counted a timeout; the
            # bound is only reached when that never comes.
            async with asyncio.timeout(60):
                while len(bus.waits[2]) < 4 or sum_of(reported(), "timeouts") < 1:
                    await asyncio.sleep(0.05)
            # All taken in one step, the pollers running: the reads the test's end cancels
            # would count as transactions that ended (OrderedBus notes a read as it returns).
            cycles = [poller.cycles for poller in pollers]
            readings, reports, stats = drain(queue), reported(), bus.stats()
            ended, waits = list(bus.ended), {unit: list(bus.waits[unit]) for unit in (1, 2, 3)}
            silent_requests = rtu_sim.slave(2).requests
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
        assert not bus.is_open, "the last slave's driver closed the port"
        await buses.close()
    by_point: dict[str, list[Reading]] = {}
    for reading in readings:
        by_point.setdefault(reading.point, []).append(reading)
    # Every cycle of every poller gave one reading per point: GOOD for the answering slaves,
    # with their values; BAD for the silent one, never missing.
    for cycles_done, code in zip(cycles, ("R2", "R1", "R3"), strict=True):
        for point in ("A", "B"):
            assert len(by_point[f"{code}-{point}"]) == cycles_done > 0, (code, cycles_done)
    for code in ("R1-A", "R1-B", "R3-A", "R3-B"):
        assert {r.quality for r in by_point[code]} == {Quality.GOOD}, code
    for code, value in (("R1-B", 420.1), ("R3-B", 420.3)):
        assert [r.value for r in by_point[code]] == pytest.approx([value] * len(by_point[code]))
    assert {r.quality for r in by_point["R2-A"]} == {Quality.BAD}
    assert {"link_lost", "link_down"} <= {f for r in by_point["R2-A"] for f in r.flags}
    # Each try of the silent slave is one request, no retry, and costs the bus one timeout
    # (its reading is emitted in the step its transaction ended in); between its tries, the
    # backoff's cycles say link_down without asking the bus.
    tries = sum("link_lost" in r.flags for r in by_point["R2-A"])
    assert len(waits[2]) == stats.timeouts == tries
    assert tries <= silent_requests <= tries + 1  # the next try may be on the wire
    # Not stalling them, from the order of the wire (see OrderedBus): each healthy request
    # waits for at most one transaction of each other slave (FIFO, one request out per
    # poller), so never for two silent timeouts nor another slave's whole cycle; and each
    # healthy slave has a transaction between any two tries of the silent one: polled in
    # every cycle the silent one was. That order holds unless the loop stalls for longer than
    # the backoff less the poll interval (0.7 s) at one silent try: a healthy poller due in
    # the silent one's backoff is then asked for first (its tick is the earlier timer).
    assert any(behind[2] for unit in (1, 3) for behind in waits[unit]), "not tested"
    silent_at = [i for i, unit in enumerate(ended) if unit == 2]
    between = [ended[a + 1 : b] for a, b in itertools.pairwise(silent_at)]
    for unit, cycles_done in ((1, cycles[1]), (3, cycles[2])):
        # Two requests a cycle, and maybe the first of a read not yet done.
        assert 2 * cycles_done <= len(waits[unit]) <= 2 * cycles_done + 1, unit
        assert all(max(b.values(), default=0) <= 1 for b in waits[unit]), (unit, waits[unit])
        assert all(unit in others for others in between), (unit, ended)
    # The measured utilization is reported for the port, its counts those of the bus. Its
    # value over a 0.5 s period is no bound here: a transaction is counted whole in the
    # period it ends in, and a loop stalled past a deadline makes it that much longer.
    assert {e["port"] for e in reports} == {rtu_sim.path}
    assert all(float(str(e["utilization"])) >= 0 for e in reports)
    assert 1 <= sum_of(reports, "timeouts") <= stats.timeouts
    assert sum_of(reports, "transactions") <= stats.transactions


def sum_of(reports: Sequence[Mapping[str, object]], field: str) -> int:
    """The sum of an integer field over utilization reports."""
    return sum(int(str(e[field])) for e in reports)


async def test_a_silent_slave_delays_the_others_by_at_most_one_timeout(
    rtu_sim: RtuBusSim,
) -> None:
    config = parse(rtu_devices(rtu_sim.path, poll="300ms", timeout="200ms"))
    buses = OneOrderedBus()  # one bus for the port, as RtuBuses gives, noting the wire's order
    async with polling(config, buses, head_start=0.03) as (_, queue):
        # Until the silent slave was tried 4 times; the bound is only reached when that never
        # comes. Then every count is taken in one step, the pollers running: the reads the
        # test's end cancels would count in OrderedBus as transactions that ended (a healthy
        # read cancelled in the bus queue counted one of the other healthy slave's queued
        # reads cancelled before it: Counter({1: 2}) under load).
        bus = buses.bus
        async with asyncio.timeout(60):
            while bus is None or len(bus.waits[2]) < 4:
                await asyncio.sleep(0.05)
                bus = buses.bus
        stats, readings, silent_requests = bus.stats(), drain(queue), rtu_sim.slave(2).requests
        waits = {unit: list(bus.waits[unit]) for unit in (1, 2, 3)}
    while bus.is_open:  # as RtuBuses.close: no port left open, whatever the drivers did
        await bus.detach()
    # No retries: each try of the silent slave is one request, one timeout and one read that
    # ends at it (a lost link, its other request not sent): the silent slave costs the others
    # one timeout per try, not one per request. Its next request may be on the wire.
    lost = [r for r in readings if r.point == "R2-A" and "link_lost" in r.flags]
    assert len(waits[2]) == stats.timeouts == len(lost) >= 4
    assert stats.timeouts <= silent_requests <= stats.timeouts + 1
    for unit, code in ((1, "R1-A"), (3, "R3-A")):
        assert {r.quality for r in readings if r.point == code} == {Quality.GOOD}, code
        # Each request of a healthy slave waits for at most one transaction of each other
        # slave (see OrderedBus): the bus is FIFO and each poller has one request out at a
        # time. So it waits out at most one silent timeout, never two, and never another
        # slave's whole cycle. Counted from the order of the wire, not timed: the time
        # between two readings also holds how long this loaded machine left the loop
        # waiting, at each end (a gap of 1.17 s against 0.3 s polls and a 0.2 s timeout,
        # with the loop stalled 0.2 s every 30 ms).
        assert all(max(b.values(), default=0) <= 1 for b in waits[unit]), (unit, waits[unit])
    # The silent slave's request is first in the queue whenever it is tried (its poller ticks
    # 30 ms ahead): the others then wait out its timeout.
    assert any(behind[2] for unit in (1, 3) for behind in waits[unit]), "not tested"


async def test_a_silent_slave_is_retried_after_ever_longer_pauses(rtu_sim: RtuBusSim) -> None:
    # Joining the bus always "connects"; only an answer may restart the delays, or a silent
    # slave would be retried at the shortest delay for ever.
    config = parse(rtu_devices(rtu_sim.path, poll="100ms", timeout="100ms"))
    started: dict[str, int] = {}
    buses = RtuBuses()
    pollers = []
    for device in config.devices[:2]:  # silent-2 and slave-1

        def factory(name: str = device.id) -> itertools.repeat[float]:
            started[name] = started.get(name, 0) + 1
            return itertools.repeat(0.2)

        sink = lambda _: asyncio.sleep(0)  # noqa: E731 - what is read does not matter here
        pollers.append(poller_of(config, device, buses, sink=sink, backoff=factory))
    tasks = [asyncio.create_task(p.run()) for p in pollers]
    await asyncio.sleep(1.5)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert rtu_sim.slave(2).requests >= 3, "tried again and again"
    assert started == {"silent-2": 1, "slave-1": 2}, "silent: never restarted; healthy: once"


# --- serial free-running: a held value is one reading, not one per poll -----------------------


async def test_a_free_running_value_is_one_reading_however_often_it_is_polled() -> None:
    async with GasAnalyzerSim(free_running=0.35, checksum=Checksum.XOR, seed=2) as sim:
        config = parse(gas_device(sim.path, extra="checksum: xor, max_age: 2s"))
        async with polling(config, RtuBuses()) as (pollers, queue):
            started = time.monotonic()
            await asyncio.sleep(1.6)
            elapsed = time.monotonic() - started
        lines = sim.lines_sent
    readings = drain(queue)
    good = [r for r in readings if r.quality is Quality.GOOD]
    assert len({r.t for r in good}) == len(good), "no two readings of one measurement"
    # One reading per line the instrument sent (the first may come before the port opened).
    assert lines - 1 <= len(good) <= lines
    # Polled every 100 ms all along: each cycle's sample was either emitted or a repeat.
    poller = pollers[0]
    assert poller.cycles >= elapsed / 0.1 - 2
    assert len(readings) + poller.repeats_dropped == poller.cycles
    assert poller.repeats_dropped >= poller.cycles / 2


# --- probe -------------------------------------------------------------------------------------


async def test_probe_reads_every_kind_of_device(rtu_sim: RtuBusSim, tmp_path: Path) -> None:
    async with (
        GasAnalyzerSim(checksum=Checksum.XOR) as asked,
        GasAnalyzerSim(free_running=0.2, checksum=None) as free,
        SlopeServer(stations=1, interval=0.1) as slope,
    ):
        config = parse(
            rtu_devices(rtu_sim.path)
            + gas_device(asked.path)
            + gas_device(free.path, extra="max_age: 2s")
            + f"  - {{id: slope, driver: opcua, endpoint: '{slope.endpoint}', timeout: 2s,\n"
            "     points: [{point: S1-GX, quota: BP-GX, node: 'ns=2;s=Slope.G1.X'},\n"
            "              {point: S1-NO, quota: BP-GX, node: 'ns=2;s=Slope.G9.X'}]}\n",
            tmp_path,
        )
        rows = {row.point: row for row in await probe_site(config, None, guess=False)}
        asked_code, free_code = (f"G-TOX-{sim.path.rsplit('/', 1)[-1]}" for sim in (asked, free))
    assert (rows["R1-B"].raw, rows["R1-B"].decoded, rows["R1-B"].quality) == ("1069", 4201, "good")
    assert rows["R1-B"].rtt_ms is not None
    assert (rows["R2-A"].quality, rows["R2-A"].flags) == ("bad", ("timeout",))
    asked_row = rows[asked_code]
    assert asked_row.raw.startswith("H2S=")
    assert "*" in asked_row.raw, "the line as it came, checksum included"
    assert asked_row.quality == "good"
    assert asked_row.rtt_ms is not None
    free_row = rows[free_code]
    assert (free_row.quality, free_row.rtt_ms) == ("good", None), "listened, not asked"
    assert (rows["S1-GX"].raw, rows["S1-GX"].quality) == ("Good", "good")
    assert rows["S1-GX"].rtt_ms is not None
    assert (rows["S1-NO"].raw, rows["S1-NO"].quality) == ("BadNodeIdUnknown", "bad")
