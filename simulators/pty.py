"""The instrument end of a pseudo terminal, for simulators that stand in for serial devices.

`os.openpty` gives a pair: the simulator keeps the master side and the driver opens the slave
path (``/dev/pts/N``) exactly as it would open ``/dev/ttyUSB0``. The simulator also keeps the
slave side open itself: with no slave open, the master reads as an error forever, which would
turn the loop's reader callback into a busy loop while no driver is connected.

A pty has no baud rate: bytes arrive at once. Simulators that care about line timing delay
their answers by the time the frames would take on the wire.

`PtySimulator` is the base of the serial simulators (the gas analyzer, the RTU bus): it opens
and closes the pty, runs an optional background task, sends answers after a delay, and
`serve_pty` runs one from a command line until SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import tty
from pathlib import Path
from typing import TYPE_CHECKING

from simulators.lifecycle import Simulator, cancel_task, stop_on_signals

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from typing import Any

__all__ = ["PtyEndpoint", "PtySimulator", "serve_pty"]

_READ_CHUNK = 4096


class PtyEndpoint:
    """The simulator's end of a pseudo terminal, watched by the event loop.

    `path` is what a driver opens; `link`, if given, is a symlink to it that outlives pty
    numbering (``--link /tmp/ttyGAS``), replaced if it exists and removed on close.
    """

    def __init__(self, on_data: Callable[[bytes], None], link: Path | None = None) -> None:
        self._on_data = on_data
        self._master, self._slave = os.openpty()
        # Raw at once: the simulator may write before any driver has configured the line.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self.link = link
        self.dropped_bytes = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        if link is not None:
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(self.path)

    @property
    def device(self) -> str:
        """Return the path a driver should open: the link if there is one."""
        return str(self.link) if self.link is not None else self.path

    def start(self) -> None:
        """Start delivering what the driver writes to `on_data` (needs a running loop)."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._master, self._readable)

    def write(self, data: bytes) -> None:
        """Send bytes to the driver; what the pty cannot take now is dropped and counted.

        A real line does not queue for a reader that is not there either.
        """
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            written = 0
        except OSError:  # the pty is being torn down
            written = 0
        self.dropped_bytes += len(data) - written

    def close(self) -> None:
        """Stop watching, close both sides and remove the link; safe to call twice."""
        if self._master < 0:
            return
        if self._loop is not None:
            self._loop.remove_reader(self._master)
        os.close(self._master)
        os.close(self._slave)
        self._master = self._slave = -1
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()

    def _readable(self) -> None:
        """Read what the driver wrote (the loop's reader callback)."""
        try:
            chunk = os.read(self._master, _READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            # EIO means no process has the slave open; we keep it open, so this is teardown.
            # Stop watching: the fd would stay readable and spin the loop.
            if self._loop is not None:
                self._loop.remove_reader(self._master)
            return
        if chunk:
            self._on_data(chunk)


class PtySimulator(Simulator):
    """A serial device on a pty: use as ``async with Sub(...) as sim`` and open `sim.path`.

    A subclass answers what the driver writes (`_on_data`) and may run a background task
    (`_background`, started with the pty and cancelled before it closes).
    """

    kind = "device"  # for "the simulated <kind> is not started"
    task_name = "pty-sim"  # of the background task

    def __init__(self, link: Path | None = None) -> None:
        self._link = link
        self._pty: PtyEndpoint | None = None
        self._task: asyncio.Task[None] | None = None
        self._replies: set[asyncio.TimerHandle] = set()

    @property
    def path(self) -> str:
        """Return the path a driver opens (the link if one was asked for).

        Raises:
            RuntimeError: the simulator is not started.
        """
        return self._endpoint().device

    @property
    def pty_path(self) -> str:
        """Return the pty's own path (``/dev/pts/N``), whether or not there is a link.

        Raises:
            RuntimeError: the simulator is not started.
        """
        return self._endpoint().path

    async def start(self) -> None:
        """Open the pty, start answering and start the background task, if any."""
        self._pty = PtyEndpoint(self._on_data, self._link)
        self._pty.start()
        background = self._background()
        if background is not None:
            self._task = asyncio.create_task(background, name=self.task_name)

    async def stop(self) -> None:
        """Stop, drop pending answers and close the pty; safe to call twice."""
        task, self._task = self._task, None
        await cancel_task(task)
        for handle in self._replies:
            handle.cancel()
        self._replies.clear()
        pty, self._pty = self._pty, None
        if pty is not None:
            pty.close()

    def _background(self) -> Coroutine[Any, Any, None] | None:
        """Return the coroutine to run while started, or None (the default)."""
        return None

    def _on_data(self, chunk: bytes) -> None:
        """Take what the driver wrote."""
        raise NotImplementedError

    def _send(self, data: bytes) -> None:
        """Write to the pty now, if it is open."""
        if self._pty is not None:
            self._pty.write(data)

    def _send_after(self, delay: float, data: bytes) -> None:
        """Send `data` after `delay` seconds (at once when it is not positive)."""
        if delay <= 0:
            self._send(data)
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def fire() -> None:
            if handle is not None:
                self._replies.discard(handle)
            self._send(data)

        handle = loop.call_later(delay, fire)
        self._replies.add(handle)

    def _endpoint(self) -> PtyEndpoint:
        if self._pty is None:
            raise RuntimeError(f"the simulated {self.kind} is not started")
        return self._pty


async def serve_pty(sim: PtySimulator) -> None:
    """Run `sim`, print its pty path on stdout, serve until SIGINT or SIGTERM."""
    stop = stop_on_signals()
    async with sim:
        sys.stdout.write(sim.pty_path + "\n")
        sys.stdout.flush()
        await stop.wait()
