"""The serial port's own behaviour on a pseudo terminal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from drivers.base import DriverConnectionError
from drivers.serial.port import TAKE_LIMIT, SerialPort
from drivers.serial.settings import SerialSettings
from tests.support.chatter import chatter
from tests.support.high_fds import SELECT_LIMIT, descriptors_on, low_fds_taken

READ_MOST = 4096  # what a tty hands over in one read at most (n_tty)


@dataclass
class PtyPort:
    """A port open on a pty's slave side; the test writes to `master`."""

    master: int
    slave: int
    got: list[bytes] = field(default_factory=list)
    lost: list[DriverConnectionError] = field(default_factory=list)
    # Called with the size of every chunk the port hands on, after it is in `got`.
    after_read: Callable[[int], None] = lambda _count: None

    def send(self, data: bytes) -> None:
        """Write `data` to the port and wait until the tty has it (the loop does not run).

        Without blocking: a pty that holds less than `data` fails the test, not hangs it.
        """
        os.set_blocking(self.master, False)
        try:
            written = os.write(self.master, data)
        finally:
            os.set_blocking(self.master, True)
        assert written == len(data), f"the pty took {written} of {len(data)} bytes"
        assert select.select([self.slave], [], [], 5)[0], "the bytes never reached the tty"

    def on_data(self, chunk: bytes, _t: float) -> None:
        """The port's callback."""
        self.got.append(chunk)
        self.after_read(len(chunk))


@contextlib.contextmanager
def pty_port(fd_floor: int = 0) -> Iterator[tuple[SerialPort, PtyPort]]:
    """A port on a pty whose descriptor is `fd_floor` or above (the test's side is not)."""
    with contextlib.ExitStack() as cleanup:  # whatever fails, what was opened is closed
        master, slave = os.openpty()
        cleanup.callback(os.close, master)
        cleanup.callback(os.close, slave)
        pty = PtyPort(master, slave)
        path = os.ttyname(slave)
        with low_fds_taken(fd_floor):
            port = SerialPort.open(SerialSettings(path, 9600), pty.on_data, pty.lost.append)
        cleanup.callback(port.close)
        assert min(descriptors_on(path) - {slave}) >= fd_floor
        yield port, pty


# A port on a descriptor >= 1024 (an agent with hundreds of sockets and files open): select
# refuses it ("filedescriptor out of range in select()"), so every read of the line failed.
FD_FLOORS = pytest.mark.parametrize("fd_floor", [0, SELECT_LIMIT], ids=["low_fd", "high_fd"])


@FD_FLOORS
async def test_take_arrived_hands_on_what_the_loop_has_not_read_yet(fd_floor: int) -> None:
    with pty_port(fd_floor) as (port, pty):
        port.take_arrived()  # nothing has arrived: nothing handed on, and no hangup either
        assert (pty.got, pty.lost, port.is_open) == ([], [], True)
        pty.send(b"\x01\x03")
        port.take_arrived()  # the loop has not run since
        assert (pty.got, pty.lost) == ([b"\x01\x03"], [])


@FD_FLOORS
async def test_bytes_a_deadline_took_first_are_no_hangup_when_the_loop_reads_after(
    fd_floor: int,
) -> None:
    # A busy machine: the loop finds the port readable and queues its reader, but in the same
    # pass, before the reader runs, a driver judging its deadline takes those bytes
    # (take_arrived). The reader then reads nothing, as a tty in raw mode with VMIN 0 does when
    # it is empty; that is no hangup, and the port must stay open for the next read.
    loop = asyncio.get_running_loop()
    failed: list[str] = []  # what the loop's callbacks raised (the loop only logs it)
    loop.set_exception_handler(lambda _loop, context: failed.append(str(context)))
    with pty_port(fd_floor) as (port, pty):
        pty.send(b"\x01\x03")
        # Queued now, so it runs first in the loop's next pass; the reader that pass's poll
        # queues runs after it.
        loop.call_soon(port.take_arrived)
        for _ in range(3):
            await asyncio.sleep(0)
        assert (pty.got, pty.lost, port.is_open) == ([b"\x01\x03"], [], True)
        pty.send(b"\x05")  # and the port still reads
        for _ in range(3):
            await asyncio.sleep(0)
        assert pty.got == [b"\x01\x03", b"\x05"]
    assert failed == []


async def test_take_arrived_takes_a_backlog_larger_than_one_read() -> None:
    # A tty hands over at most 4 KiB per read. A driver drops what came before its request
    # with take_arrived; a backlog left half read came after the request, as its answer.
    backlog = bytes(range(256)) * 40  # 10240 bytes: more than two reads, less than a pty holds
    with pty_port() as (port, pty):
        pty.send(backlog)
        port.take_arrived()  # the loop has not run since
        assert (len(b"".join(pty.got)), pty.lost) == (len(backlog), [])
        assert b"".join(pty.got) == backlog


async def test_take_arrived_stops_on_a_line_that_never_falls_silent_and_says_so() -> None:
    # An instrument that talks without pause (or a backlog larger than one call takes: a real
    # UART's tty holds up to 640 KiB, 11 s at 115200 Bd): one call stops near its limit, and
    # the caller must learn that bytes still wait, else the next old line answers its request.
    line = b"H2S=9.9 CO=9.9 O2=9.9 %VOL\r\n"
    with pty_port() as (port, pty), chatter(pty.master, line) as talking:
        pty.after_read = talking.took  # the pty never empties while the port reads
        emptied = port.take_arrived()
        taken = len(b"".join(pty.got))
        still_waiting = bool(select.select([pty.slave], [], [], 0)[0])
    assert (emptied, still_waiting, pty.lost) == (False, True, []), f"{taken} bytes taken"
    assert TAKE_LIMIT <= taken <= TAKE_LIMIT + READ_MOST
