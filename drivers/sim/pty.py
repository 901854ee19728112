"""The instrument end of a pseudo terminal, for simulators that stand in for serial devices.

`os.openpty` gives a pair: the simulator keeps the master side and the driver opens the slave
path (``/dev/pts/N``) exactly as it would open ``/dev/ttyUSB0``. The simulator also keeps the
slave side open itself: with no slave open, the master reads as an error forever, which would
turn the loop's reader callback into a busy loop while no driver is connected.

A pty has no baud rate: bytes arrive at once. Simulators that care about line timing delay
their answers by the time the frames would take on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["PtyEndpoint"]

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
