"""An RTU read queued on the bus behind a silent slave still gets its whole reply timeout.

The reply deadline bounds a device's own transaction, counted once the line went quiet; the
time a read spent queued for the bus must not count against it. Operators give every device on
a bus the same timeout, so a deadline counted from the read's call would make a healthy
device's points BAD whenever a slave it queues behind goes silent.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from drivers.base import DriverTimeoutError, Quality
from drivers.modbus.codec import DataType, Table
from drivers.modbus.plan import RegisterPoint
from drivers.modbus.rtu import ModbusRtuDriver
from drivers.modbus.rtu_bus import RtuBus
from drivers.serial.settings import Parity, SerialSettings
from simulators.rtu_bus import RtuBusSim
from simulators.rtu_slaves import PATTERN_BASE, Fault, pattern_slave

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from simulators.rtu_slaves import SimSlave

HEALTHY, SILENT = 1, 2
TIMEOUT = 0.25  # the same for both devices, as operators configure a bus


class HeldSim(RtuBusSim):
    """The simulated bus without a baud rate (a slave answers in the callback that reads its
    request, so no timer of a starved loop delays it), calling `heard(unit)` as a slave takes
    a request, and holding replies back until the loop time `opens`, once that is set."""

    def __init__(self, slaves: Sequence[SimSlave], heard: Callable[[int], None]) -> None:
        super().__init__(slaves)
        self.opens: float | None = None
        self._heard = heard

    def _on_data(self, chunk: bytes) -> None:
        before = {unit: slave.requests for unit, slave in self.slaves.items()}
        super()._on_data(chunk)
        for unit, slave in self.slaves.items():
            if slave.requests > before[unit]:
                self._heard(unit)

    def _send_later(self, reply: bytes, think: float) -> None:
        early = 0.0 if self.opens is None else self.opens - asyncio.get_running_loop().time()
        if early > 0:
            self._send_after(early, reply)
        else:
            super()._send_later(reply, think)


async def test_a_read_queued_behind_a_silent_slave_gets_its_whole_timeout() -> None:
    loop = asyncio.get_running_loop()
    point = [RegisterPoint("unit", Table.HOLDING, PATTERN_BASE, DataType.UINT16)]
    asked: list[asyncio.Task[bool]] = []
    slaves = [pattern_slave(HEALTHY), pattern_slave(SILENT)]
    slaves[1].fault = Fault.SILENT

    def heard(unit: int) -> None:
        # The healthy read is asked in the step the silent slave took its request: that
        # transaction is on the wire, so the read queues behind all of it (FIFO lock).
        if unit == SILENT and not asked:
            asked.append(asyncio.create_task(queued_read()))

    def ended(_: object) -> None:
        # The healthy reply comes half a timeout after the silent read ended. The bus woke the
        # queued healthy read just before this callback, but that read first waits t3.5
        # (1.75 ms) of quiet line, so its request is sent after this (at worst, on a process
        # descheduled that long, in the step before). So the reply is well inside a deadline
        # counted from its own request, and its timer falls due before that deadline's,
        # however late the loop runs: timers run in order of due time, and the bus takes
        # what is in the buffer when it judges. A deadline counted from the read's call
        # (which queued a whole timeout already) is judged at once, before it. Replies sent at
        # once would make that outcome a race with the kernel's pty work.
        sim.opens = loop.time() + TIMEOUT / 2

    async def queued_read() -> bool:
        # Not done yet: the silent transaction still holds the bus (a read releases the lock
        # and ends in one step), so this read really waits behind it.
        queued = not silent_read.done()
        samples = await healthy.read()
        assert [(s.quality, s.value) for s in samples] == [(Quality.GOOD, 4200 + HEALTHY)]
        return queued

    async with HeldSim(slaves, heard) as sim:
        # 8N2 at 19,200: the bus waits t3.5 (1.75 ms) of quiet line before each request.
        bus = RtuBus(SerialSettings(sim.path, 19200, Parity.NONE, 2))
        healthy = ModbusRtuDriver("healthy", bus, HEALTHY, point, timeout=TIMEOUT)
        silent = ModbusRtuDriver("silent", bus, SILENT, point, timeout=TIMEOUT)
        await healthy.connect()
        await silent.connect()
        try:
            silent_read = asyncio.create_task(silent.read())
            silent_read.add_done_callback(ended)
            with contextlib.suppress(DriverTimeoutError):
                await silent_read
            assert isinstance(silent_read.exception(), DriverTimeoutError)
            assert len(asked) == 1
            assert await asked[0], "the healthy read did not queue behind the silent one"
        finally:
            await healthy.close()
            await silent.close()
    assert (sim.slave(HEALTHY).requests, sim.slave(SILENT).requests) == (1, 1)
    assert bus.stats().timeouts == 1  # the silent slave's alone
