"""A serial port driven by the asyncio loop: pyserial opens and configures it, no threads.

pyserial sets the line up (baud rate, parity, stop bits, an exclusive lock, an empty input
queue) and hands over a non-blocking file descriptor. From then on the event loop watches it:
`loop.add_reader` delivers every chunk as it arrives, with its arrival time, and writes that
the driver cannot take at once wait on `loop.add_writer`. pyserial's own ``read``/``write``
block or poll; neither belongs in an event loop.

This is the only module that imports pyserial: its errors become DriverConnectionError here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import termios
from typing import TYPE_CHECKING

import serial

from drivers.base import DriverConnectionError, DriverTimeoutError

if TYPE_CHECKING:
    from collections.abc import Callable

    from drivers.serial.settings import SerialSettings

__all__ = ["TAKE_LIMIT", "SerialPort"]

_READ_CHUNK = 4096  # a tty's line discipline (n_tty) hands over at most 4 KiB per read
# What `take_arrived` reads at most in one call, so that a line that never falls silent (an
# instrument that talks without pause, a pty fed faster than it is read) cannot hold the
# caller. It is not more than every tty holds: a UART's tty keeps up to 640 KiB in its flip
# buffers (TTYB_DEFAULT_MEM_LIMIT, tty_buffer.c) besides the 4 KiB of n_tty, over 11 s of
# bytes at 115200 Bd after a stalled loop; a pty holds 11 to 20 KiB. So a call that stops
# here says so, and the caller treats the line as never quiet.
TAKE_LIMIT = 128 * 1024


class SerialPort:
    """One open serial port: bytes in through a callback, bytes out through `write`.

    `on_data(chunk, t_mono)` gets every chunk with the loop time it arrived. `on_lost(error)`
    is called once if the port fails or hangs up (a USB adapter pulled, a pty closed); the port
    is closed by then. Build it with `SerialPort.open` inside a running loop.
    """

    def __init__(
        self,
        settings: SerialSettings,
        handle: serial.Serial,
        on_data: Callable[[bytes, float], None],
        on_lost: Callable[[DriverConnectionError], None],
    ) -> None:
        self.settings = settings
        self._handle: serial.Serial | None = handle
        self._fd = handle.fileno()
        # poll, not select: select fails for a descriptor >= 1024 ("filedescriptor out of
        # range"), and a gateway with hundreds of sockets and files open gets such ports.
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self._on_data = on_data
        self._on_lost = on_lost
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._readable)

    @classmethod
    def open(
        cls,
        settings: SerialSettings,
        on_data: Callable[[bytes, float], None],
        on_lost: Callable[[DriverConnectionError], None],
    ) -> SerialPort:
        """Open and configure the port and start watching it.

        Raises:
            DriverConnectionError: the port does not exist, is busy or cannot be configured.
        """
        try:
            handle = serial.Serial(
                settings.port,
                baudrate=settings.baudrate,
                bytesize=settings.bytesize,
                parity=str(settings.parity),
                stopbits=settings.stopbits,
                timeout=0,
                write_timeout=0,
                exclusive=True,  # two processes on one RS-485 port garble each other's frames
            )
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            # termios.error: the device refuses the line settings (a pty has no parity).
            raise DriverConnectionError(f"cannot open {settings.port}: {exc}") from exc
        return cls(settings, handle, on_data, on_lost)

    @property
    def is_open(self) -> bool:
        """Whether the port is open (not closed and not failed)."""
        return self._handle is not None

    async def write(self, data: bytes, *, stall_timeout: float) -> None:
        """Queue `data` for sending; wait only while the driver's queue is full.

        Raises:
            DriverConnectionError: the port is closed or failed while writing.
            DriverTimeoutError: the driver took nothing for `stall_timeout` seconds (flow
                control holding the line).
        """
        view = memoryview(data)
        while view:
            written = self._write_some(view)
            view = view[written:]
            if view:
                await self._writable(stall_timeout)

    def take_arrived(self) -> bool:
        """Hand on to `on_data` all that has arrived but the loop has not yet read, now.

        A reader judging a deadline calls this first: what is already in the receive buffer
        came in time, however late the loop itself got round to it. A driver about to send
        a request calls it to drop what came before: all of it, not one read's worth, else
        the rest of a backlog would come after the request, taken for its answer.

        Returns False if it stopped at TAKE_LIMIT bytes with more still waiting (the line
        never fell silent), True once the line read empty (or the port failed or hung up).
        """
        taken = 0
        # Only while readable: a tty in raw mode with VMIN 0 reads nothing as b"" (then
        # `_readable` polls again to tell that from a hangup).
        while self._handle is not None and self._arrived():
            if taken >= TAKE_LIMIT:
                return False
            read = self._readable()
            if not read:
                break
            taken += read
        return True

    def close(self) -> None:
        """Stop watching and close the port; safe to call twice."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        with contextlib.suppress(OSError, serial.SerialException):
            handle.close()

    def _write_some(self, data: memoryview) -> int:
        """Write what the driver takes now, without blocking."""
        if self._handle is None:
            raise DriverConnectionError(f"{self.settings.port}: port is closed")
        try:
            return os.write(self._fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            error = DriverConnectionError(f"{self.settings.port}: write failed: {exc}")
            self._fail(error)
            raise error from exc

    async def _writable(self, limit: float) -> None:
        """Wait until the driver can take more bytes."""
        ready = self._loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        self._loop.add_writer(self._fd, wake)
        try:
            async with asyncio.timeout(limit):
                await ready
        except TimeoutError:
            if self._handle is None:  # failed while waiting: report the real cause
                raise DriverConnectionError(f"{self.settings.port}: port closed") from None
            raise DriverTimeoutError(f"{self.settings.port}: write stalled") from None
        finally:
            if self._handle is not None:
                self._loop.remove_writer(self._fd)

    def _arrived(self) -> bool:
        """Whether a read would not block: bytes are waiting, or the tty hung up."""
        # A tty's poll that finds its line discipline empty first waits for bytes still in
        # the flip buffers to be passed on (n_tty_poll): empty means the kernel holds none.
        # Not that none are on their way: a USB adapter (FTDI) keeps what it received until
        # its latency timer (16 ms by default) or a full packet sends it to the host.
        return bool(self._poll.poll(0))

    def _readable(self) -> int:
        """Read what has arrived and hand it on (the loop's reader callback).

        Returns how many bytes it handed on.
        """
        chunk = self._read()
        if chunk == b"":
            # A tty reads as end-of-file after a hangup, and stays readable for ever. In raw
            # mode with VMIN 0 it also reads b"" when it is empty: in the loop's pass that
            # queued this call, a driver judging its deadline may have taken what the loop
            # saw (`take_arrived`). Only a tty that still polls readable and again reads
            # nothing is hung up.
            if not self._arrived():
                return 0
            chunk = self._read()  # bytes that came meanwhile, or the hangup's b"" again
            if chunk == b"":
                self._fail(DriverConnectionError(f"{self.settings.port}: hung up"))
                return 0
        if not chunk:
            return 0
        self._on_data(chunk, self._loop.time())
        return len(chunk)

    def _read(self) -> bytes | None:
        """Read what is there without blocking.

        None if it would block, or if the port failed (then it is closed, its owner told).
        """
        try:
            return os.read(self._fd, _READ_CHUNK)
        except BlockingIOError:
            return None
        except OSError as exc:
            self._fail(DriverConnectionError(f"{self.settings.port}: read failed: {exc}"))
            return None

    def _fail(self, error: DriverConnectionError) -> None:
        """Close after an I/O error and tell the owner once."""
        if self._handle is None:
            return
        self.close()
        self._on_lost(error)
