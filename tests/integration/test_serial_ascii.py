"""Serial ASCII driver against the simulated gas analyzer on a pseudo terminal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from drivers.base import Driver, DriverConnectionError, Quality, RawSample
from drivers.serial.ascii import HELD, SerialAsciiDriver
from drivers.serial.checksum import Checksum, ChecksumSpec
from drivers.serial.framing import Delimited, Framing
from drivers.serial.parse import LinePoint
from drivers.serial.port import TAKE_LIMIT
from drivers.serial.settings import SerialSettings
from simulators.gas_analyzer import AnalyzerFault, GasAnalyzerSim
from tests.support.answering import ANSWERING
from tests.support.chatter import Chatter, chatter
from tests.support.connected import connected
from tests.support.high_fds import SELECT_LIMIT, descriptors_on, low_fds_taken
from tests.support.sim_cli import simulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

REQUEST = b"RD\r\n"
POINTS = [
    LinePoint("h2s", r"H2S=(?P<value>-?[0-9.]+)"),
    LinePoint("co", r"CO=(?P<value>-?[0-9.]+)"),
    LinePoint("o2", r"O2=(?P<value>-?[0-9.]+) %VOL"),
]
KEYS = {"h2s": "H2S", "co": "CO", "o2": "O2"}


def driver_for(
    sim: GasAnalyzerSim,
    *,
    points: Sequence[LinePoint] = POINTS,
    request: bytes | None = REQUEST,
    framing: Framing | None = None,
    checksum: Checksum | None = Checksum.XOR,
    timeout: float = ANSWERING,
    max_age: float = 10.0,
    partial_timeout: float = 0.5,
) -> SerialAsciiDriver:
    return SerialAsciiDriver(
        "gas-7",
        SerialSettings(sim.path, 9600),
        points,
        request=request,
        framing=framing,
        checksum=ChecksumSpec(checksum) if checksum else None,
        timeout=timeout,
        max_age=max_age,
        partial_timeout=partial_timeout,
    )


def expected(sim: GasAnalyzerSim) -> dict[str, float]:
    return {key: sim.values[gas] for key, gas in KEYS.items()}


def values(samples: Sequence[RawSample]) -> dict[str, float | None]:
    return {s.key: s.value for s in samples}


def errors(samples: Sequence[RawSample]) -> list[str]:
    assert all(s.quality is Quality.BAD and s.value is None for s in samples), samples
    return [s.error or "" for s in samples]


async def eventually(probe: Callable[[], bool], limit: float = 2.0) -> None:
    """Wait (bounded) until `probe()` holds."""
    deadline = time.monotonic() + limit
    while not probe():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# --- request/response -------------------------------------------------------------------------


@pytest.mark.parametrize("checksum", [*Checksum, None])
async def test_request_response_reads_exact_values(checksum: Checksum | None) -> None:
    async with GasAnalyzerSim(checksum=checksum, seed=3) as sim:
        sim.frozen = True
        async with connected(driver_for(sim, checksum=checksum)) as driver:
            first = await driver.read()
            second = await driver.read()
    assert all(s.quality is Quality.GOOD and s.error is None for s in first + second)
    assert values(first) == values(second) == expected(sim) == {"h2s": 12.3, "co": 4.0, "o2": 20.9}
    assert bytes(first[0].raw) == sim.line().rstrip(b"\r\n")
    assert sim.requests == 2


async def test_the_echo_of_the_request_is_not_the_answer() -> None:
    """A two-wire RS-485 adapter hears its own transmitter: the request comes back as a line
    before the instrument's answer. That echo ("RD") was taken for the answer, every point
    BAD ('pattern ... does not match 'RD''), and the real answer dropped as unasked for:
    a healthy instrument read BAD on every poll."""
    async with GasAnalyzerSim(seed=3, echo=True) as sim:
        sim.frozen = True
        async with connected(driver_for(sim)) as driver:
            samples = [s for _ in range(3) for s in await driver.read()]
    assert all(s.quality is Quality.GOOD for s in samples), errors(samples)
    assert values(samples) == expected(sim)


async def test_values_follow_the_instrument() -> None:
    async with GasAnalyzerSim(seed=5) as sim, connected(driver_for(sim)) as driver:
        seen = []
        for _ in range(4):
            samples = await driver.read()
            assert values(samples) == expected(sim)  # the sim steps before each answer
            seen.append(values(samples)["h2s"])
    assert len(set(seen)) > 1


async def test_silence_is_a_timeout_bad_sample() -> None:
    async with GasAnalyzerSim() as sim:
        sim.fault = AnalyzerFault.SILENT
        async with connected(driver_for(sim, timeout=0.15)) as driver:
            started = time.monotonic()
            samples = await driver.read()
            # It waited for the answer (how much longer depends on the machine's load).
            assert time.monotonic() - started >= 0.15
    assert errors(samples) == ["timeout: no reply in 0.15 s"] * 3


ANSWER = b"H2S=1.5 CO=2.25 O2=20.9 %VOL\r\n"
ANSWERED = {"h2s": 1.5, "co": 2.25, "o2": 20.9}


@dataclass(frozen=True)
class ThreadInstrument:
    """A connected driver; the instrument on its pty's `master` is `responder`, a thread (as in
    the field, not this loop) that answers one request with ANSWER at once once started."""

    driver: SerialAsciiDriver
    master: int
    slave: int
    responder: threading.Thread
    answered: threading.Event


@contextlib.asynccontextmanager
async def thread_instrument(timeout: float) -> AsyncIterator[ThreadInstrument]:
    master, slave = os.openpty()
    answered = threading.Event()

    def answer_at_once() -> None:
        assert os.read(master, len(REQUEST)) == REQUEST
        os.write(master, ANSWER)
        answered.set()

    responder = threading.Thread(target=answer_at_once, name="instrument")
    driver = SerialAsciiDriver(
        "gas-7", SerialSettings(os.ttyname(slave), 9600), POINTS, request=REQUEST, timeout=timeout
    )
    try:
        await driver.connect()
        yield ThreadInstrument(driver, master, slave, responder, answered)
    finally:
        await driver.close()
        if responder.ident is not None:
            responder.join(5)
        os.close(master)
        os.close(slave)


async def test_an_answer_in_time_counts_though_the_driver_looked_after_its_deadline() -> None:
    # On a loaded machine the agent's process may not run for longer than a timeout. The
    # instrument (its own thread here) answered at once; when the agent runs again the line
    # is whole in the receive buffer and the deadline has passed: it is the answer.
    timeout = 0.1
    async with thread_instrument(timeout) as instrument:
        instrument.responder.start()
        reading = asyncio.create_task(instrument.driver.read())
        await asyncio.sleep(0)  # the task sends its request and waits for the answer
        # The agent's process is not scheduled: the loop does not run until the instrument
        # has answered and the deadline has passed.
        assert instrument.answered.wait(5), "the request never came"
        time.sleep(timeout)  # the stall is the point
        assert values(await reading) == ANSWERED


async def test_a_line_that_came_before_the_request_is_not_its_answer() -> None:
    # The instrument answered an earlier request after that read's deadline; on a busy
    # machine the loop had not read that line yet when the next read began. It came before
    # the request was sent, so it is no answer to it: taken, it reported the old values as
    # new (a late half line glued onto the answer, a checksum error).
    async with thread_instrument(ANSWERING) as instrument:
        os.write(instrument.master, b"H2S=9.9 CO=9.9 O2=9.9 %VOL\r\n")  # the late answer ...
        assert select.select([instrument.slave], [], [], 5)[0], "it never reached the tty"
        instrument.responder.start()  # ... still unread by the loop when the next read begins
        assert values(await instrument.driver.read()) == ANSWERED
        assert instrument.answered.wait(5)  # set just after the answer went out


async def test_a_backlog_larger_than_one_read_is_not_the_answer() -> None:
    # A tty hands over at most 4 KiB per read: dropping what came before the request took
    # one read's worth, the rest of a larger backlog was read after the request was sent and
    # its first whole line was taken for the answer (old values reported as new).
    stale = b"H2S=9.9 CO=9.9 O2=9.9 %VOL\r\n" * 300  # 8400 bytes, all before the request
    async with thread_instrument(ANSWERING) as instrument:
        os.write(instrument.master, stale)
        assert select.select([instrument.slave], [], [], 5)[0], "it never reached the tty"
        instrument.responder.start()  # ... still unread by the loop when the next read begins
        assert values(await instrument.driver.read()) == ANSWERED
        assert instrument.answered.wait(5)  # set just after the answer went out


class HeldBack(SerialAsciiDriver):
    """The driver, its port's reads held back by a `Chatter` so that the line never empties."""

    talking: Chatter | None = None

    def _on_data(self, chunk: bytes, t_loop: float) -> None:
        super()._on_data(chunk, t_loop)
        if self.talking is not None:
            self.talking.took(len(chunk))


async def test_a_line_that_never_falls_silent_is_bad_not_an_old_line() -> None:
    # An instrument that talks without pause (or more backlog than one take reads: a real
    # UART's tty holds up to 640 KiB): dropping what came before the request stopped at its
    # limit with old lines still waiting, and the next of them was the answer, reported GOOD.
    never_quiet = f"line never quiet: {TAKE_LIMIT // 1024} KiB dropped before the request"
    with contextlib.ExitStack() as cleanup:
        master, slave = os.openpty()
        cleanup.callback(os.close, master)
        cleanup.callback(os.close, slave)
        path = os.ttyname(slave)
        driver = HeldBack("gas-7", SerialSettings(path, 9600), POINTS, request=REQUEST, timeout=5)
        async with connected(driver):
            with chatter(master, b"H2S=9.9 CO=9.9 O2=9.9 %VOL\r\n") as talking:
                driver.talking = talking
                samples = await driver.read()
            asked = bool(select.select([master], [], [], 0)[0])
    assert values(samples) == {"h2s": None, "co": None, "o2": None}
    assert errors(samples) == [f"{never_quiet} and more waiting"] * 3
    assert not asked  # no request sent into a line that would answer it with an old line


async def test_reads_on_a_port_whose_descriptor_is_above_1023() -> None:
    # An agent with hundreds of sockets and files open gets descriptors >= 1024 for the
    # ports it opens; select refuses those, and every read failed with ValueError.
    async with GasAnalyzerSim(seed=3) as sim:
        sim.frozen = True
        ours = descriptors_on(sim.pty_path)  # the simulator's own end of the pty
        with low_fds_taken():
            async with connected(driver_for(sim)) as driver:
                assert min(descriptors_on(sim.pty_path) - ours) >= SELECT_LIMIT
                first = await driver.read()
                second = await driver.read()
    assert values(first) == values(second) == expected(sim)


async def test_bad_checksum_is_bad_and_the_next_good_line_reads() -> None:
    async with GasAnalyzerSim(checksum=Checksum.CRC16_MODBUS) as sim:
        sim.fault = AnalyzerFault.BAD_CHECKSUM
        async with connected(driver_for(sim, checksum=Checksum.CRC16_MODBUS)) as driver:
            bad = await driver.read()
            sim.fault = AnalyzerFault.NONE
            good = await driver.read()
    assert all("crc16_modbus checksum mismatch" in e for e in errors(bad))
    assert bad[0].raw  # the bytes that failed are kept for the technician
    assert values(good) == expected(sim)


async def test_noise_makes_bad_samples_never_an_exception() -> None:
    async with GasAnalyzerSim(noise=1.0, seed=2) as sim, connected(driver_for(sim)) as driver:
        noisy = [await driver.read() for _ in range(5)]
        sim.noise = 0.0
        clean = await driver.read()
    for samples in noisy:
        assert all(("checksum" in e) or ("ascii" in e) for e in errors(samples)), samples
    assert values(clean) == expected(sim)


async def test_garbage_is_bad_and_recovery_is_immediate() -> None:
    async with GasAnalyzerSim(seed=9) as sim:
        sim.fault = AnalyzerFault.GARBAGE
        async with connected(driver_for(sim, timeout=0.15)) as driver:
            garbage = [await driver.read() for _ in range(4)]
            sim.fault = AnalyzerFault.NONE
            clean = await driver.read()
    for samples in garbage:
        assert errors(samples)
    assert values(clean) == expected(sim)


async def test_partial_line_is_bad_and_does_not_glue_onto_the_next_answer() -> None:
    async with GasAnalyzerSim() as sim:
        sim.fault = AnalyzerFault.PARTIAL
        async with connected(driver_for(sim, timeout=0.15)) as driver:
            partial = await driver.read()
            sim.fault = AnalyzerFault.NONE
            whole = await driver.read()
    assert all("partial frame" in e for e in errors(partial))
    assert values(whole) == expected(sim)


async def test_instrument_error_reply_misses_every_pattern() -> None:
    async with GasAnalyzerSim(checksum=None) as sim:
        sim.fault = AnalyzerFault.ERROR
        async with connected(driver_for(sim, checksum=None)) as driver:
            samples = await driver.read()
    assert all("does not match 'ERR=03'" in e for e in errors(samples))
    assert bytes(samples[0].raw) == b"ERR=03"


async def test_one_pattern_miss_fails_only_its_point() -> None:
    points = [*POINTS, LinePoint("nh3", r"NH3=(?P<value>[0-9.]+)")]
    async with GasAnalyzerSim() as sim:
        driver = driver_for(sim, points=points)
        async with connected(driver):
            samples = await driver.read()
    assert [s.quality for s in samples] == [Quality.GOOD] * 3 + [Quality.BAD]
    assert "NH3" in (samples[3].error or "")


async def test_overlong_line_is_dropped_by_the_max_frame() -> None:
    async with GasAnalyzerSim() as sim:
        # max_frame shorter than the analyzer's line
        driver = driver_for(sim, framing=Delimited(b"\r\n", max_frame=16), timeout=0.15)
        async with connected(driver):
            samples = await driver.read()
    assert all("frame longer than 16 bytes" in e for e in errors(samples))


# --- free-running -----------------------------------------------------------------------------


async def test_free_running_keeps_the_latest_valid_value() -> None:
    async with GasAnalyzerSim(free_running=0.03, seed=4) as sim:
        sim.frozen = True
        async with connected(driver_for(sim, request=None, max_age=0.3)) as driver:
            assert driver.free_running
            await eventually(lambda: sim.lines_sent >= 2)
            samples = await driver.read()
            assert values(samples) == expected(sim)
            assert all(s.quality is Quality.GOOD and s.flags == () for s in samples)
            # The instrument stops: the same measurement again, flagged, until it is too old.
            sim.fault = AnalyzerFault.SILENT
            await asyncio.sleep(0.05)  # a line already on its way may still arrive
            last = await driver.read()
            held = await driver.read()
            assert values(held) == expected(sim)
            assert all(s.flags == (HELD,) for s in held)
            assert [s.t_mono for s in held] == [s.t_mono for s in last]
            await asyncio.sleep(0.35)
            stale = await driver.read()
    assert all("no valid value in 0.3 s" in e for e in errors(stale))
    assert sim.requests == 0  # free-running: nothing is ever sent to the instrument


async def test_free_running_noise_is_bad_only_when_no_valid_line_comes() -> None:
    async with (
        GasAnalyzerSim(free_running=0.02, noise=0.5, seed=6) as sim,
        connected(driver_for(sim, request=None, max_age=0.2)) as driver,
    ):
        await eventually(lambda: sim.lines_sent >= 10)
        samples = await driver.read()
        # Half the lines are noisy; the good half keeps every point current.
        assert all(s.quality is Quality.GOOD for s in samples), samples
        sim.fault = AnalyzerFault.GARBAGE
        await asyncio.sleep(0.3)
        garbage = await driver.read()
    assert all(e.startswith("no valid value in 0.2 s: ") for e in errors(garbage))


async def test_free_running_partial_line_is_dropped_after_a_quiet_gap() -> None:
    async with GasAnalyzerSim(free_running=0.1, checksum=None) as sim:
        sim.fault = AnalyzerFault.PARTIAL
        sim.frozen = True
        driver = driver_for(sim, request=None, checksum=None, max_age=1.0, partial_timeout=0.05)
        async with connected(driver):
            await eventually(lambda: sim.lines_sent >= 1)
            assert all("no line" in e for e in errors(await driver.read()))
            sim.fault = AnalyzerFault.NONE
            await eventually(lambda: sim.lines_sent >= 3)
            await asyncio.sleep(0.02)
            samples = await driver.read()
    # Without the gap rule the half line would prefix the next one ("H2S=12.3 ppm,CH2S=...").
    assert values(samples) == expected(sim)


# --- the port ---------------------------------------------------------------------------------


async def test_lost_port_raises_connection_error_and_reconnects() -> None:
    sim = GasAnalyzerSim()
    await sim.start()
    driver = driver_for(sim)
    await driver.connect()
    assert values(await driver.read()) == expected(sim)
    await sim.stop()
    with pytest.raises(DriverConnectionError):
        await driver.read()
    with pytest.raises(DriverConnectionError):
        await driver.connect()  # the pty is gone
    await driver.close()
    await driver.close()


async def test_read_before_connect_and_bad_configuration() -> None:
    settings = SerialSettings("/dev/does-not-exist")
    driver = SerialAsciiDriver("gas-7", settings, POINTS, request=REQUEST)
    with pytest.raises(DriverConnectionError, match="not connected"):
        await driver.read()
    with pytest.raises(DriverConnectionError, match="does-not-exist"):
        await driver.connect()
    with pytest.raises(ValueError, match="at least one point"):
        SerialAsciiDriver("gas-7", settings, [])
    with pytest.raises(ValueError, match="unique"):
        SerialAsciiDriver("gas-7", settings, [POINTS[0], POINTS[0]])
    with pytest.raises(ValueError, match="timeout"):
        SerialAsciiDriver("gas-7", settings, POINTS, timeout=0)
    with pytest.raises(ValueError, match="empty request"):
        SerialAsciiDriver("gas-7", settings, POINTS, request=b"")


def test_driver_satisfies_the_protocol() -> None:
    driver: Driver = SerialAsciiDriver("gas-7", SerialSettings("/dev/null"), POINTS)
    assert driver.device_id == "gas-7"


async def test_command_line_simulator(tmp_path: Path) -> None:
    link = tmp_path / "ttyGAS"
    args = ("--link", str(link), "--checksum", "lrc", "--gas", "H2S=7.5:ppm", "--frozen")
    proc = await simulator(
        *args, module="simulators.gas_analyzer", stdout=asyncio.subprocess.PIPE, stderr=None
    )
    assert proc.stdout is not None
    try:
        printed = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode().strip()
        assert link.resolve() == Path(printed)
        driver = SerialAsciiDriver(
            "gas-7",
            SerialSettings(str(link)),
            POINTS[:1],
            request=REQUEST,
            checksum=ChecksumSpec(Checksum.LRC),
            timeout=0.5,
        )
        async with connected(driver):
            (sample,) = await driver.read()
        assert (sample.quality, sample.value) == (Quality.GOOD, 7.5)
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    assert not link.exists()
