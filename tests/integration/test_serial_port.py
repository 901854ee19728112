"""The serial port's own behaviour on a pseudo terminal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
from collections.abc import Iterator
from dataclasses import dataclass, field

from drivers.base import DriverConnectionError
from drivers.serial.port import SerialPort
from drivers.serial.settings import SerialSettings


@dataclass
class PtyPort:
    """A port open on a pty's slave side; the test writes to `master`."""

    master: int
    slave: int
    got: list[bytes] = field(default_factory=list)
    lost: list[DriverConnectionError] = field(default_factory=list)

    def send(self, data: bytes) -> None:
        """Write `data` to the port and wait until the tty has it (the loop does not run)."""
        os.write(self.master, data)
        assert select.select([self.slave], [], [], 5)[0], "the bytes never reached the tty"


@contextlib.contextmanager
def pty_port() -> Iterator[tuple[SerialPort, PtyPort]]:
    master, slave = os.openpty()
    pty = PtyPort(master, slave)
    port = SerialPort.open(
        SerialSettings(os.ttyname(slave), 9600),
        lambda chunk, _t: pty.got.append(chunk),
        pty.lost.append,
    )
    try:
        yield port, pty
    finally:
        port.close()
        os.close(master)
        os.close(slave)


async def test_take_arrived_hands_on_what_the_loop_has_not_read_yet() -> None:
    with pty_port() as (port, pty):
        port.take_arrived()  # nothing has arrived: nothing handed on, and no hangup either
        assert (pty.got, pty.lost, port.is_open) == ([], [], True)
        pty.send(b"\x01\x03")
        port.take_arrived()  # the loop has not run since
        assert (pty.got, pty.lost) == ([b"\x01\x03"], [])


async def test_bytes_a_deadline_took_first_are_no_hangup_when_the_loop_reads_after() -> None:
    # A busy machine: the loop finds the port readable and queues its reader, but in the same
    # pass, before the reader runs, a driver judging its deadline takes those bytes
    # (take_arrived). The reader then reads nothing, as a tty in raw mode with VMIN 0 does when
    # it is empty; that is no hangup, and the port must stay open for the next read.
    with pty_port() as (port, pty):
        pty.send(b"\x01\x03")
        # Queued now, so it runs first in the loop's next pass; the reader that pass's poll
        # queues runs after it.
        asyncio.get_running_loop().call_soon(port.take_arrived)
        for _ in range(3):
            await asyncio.sleep(0)
        assert (pty.got, pty.lost, port.is_open) == ([b"\x01\x03"], [], True)
        pty.send(b"\x05")  # and the port still reads
        for _ in range(3):
            await asyncio.sleep(0)
        assert pty.got == [b"\x01\x03", b"\x05"]
