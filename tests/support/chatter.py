"""An instrument that talks without pause: a thread writing one line over and over to a pty.

A reader on a pty can drain it faster than a thread refills it when the scheduler puts the
thread aside (a loaded 2-core machine), and the line then is empty for a moment: a test of
"the line never falls silent" would pass or fail by chance. The reader's callback calls
`Chatter.took` with what it read, which returns once the pty holds bytes beyond it: the
reader never finds the line empty, whatever the scheduler does.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["Chatter", "chatter"]

_BLOCK_LINES = 256  # lines per write: few system calls, and room to take part of a block


class Chatter:
    """Writes `line` to a pty's `master` without pause until stopped."""

    def __init__(self, master: int, line: bytes) -> None:
        self._master = master
        self._block = line * _BLOCK_LINES
        self._written = 0
        self._taken = 0
        self._stopped = False
        self._changed = threading.Condition()
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._talk, name="chatter", daemon=True)

    @property
    def written(self) -> int:
        """Bytes the pty has taken from this writer."""
        with self._changed:
            return self._written

    def took(self, count: int) -> None:
        """The reader took `count` more bytes: return once the pty holds more than it took."""
        with self._changed:
            self._taken += count
            held = self._changed.wait_for(
                lambda: self._stopped or self._written > self._taken, timeout=10
            )
        assert held, f"the writer stalled at {self._written} bytes"

    def start(self) -> None:
        """Start talking, and return once the pty holds the first bytes.

        The master is non-blocking until `stop`.
        """
        os.set_blocking(self._master, False)
        self._thread.start()
        self.took(0)

    def stop(self) -> None:
        """Stop talking, wake a reader waiting in `took`, and wait for the thread."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        os.write(self._wake_w, b"x")  # the thread may wait for room in a full pty
        self._thread.join(10)
        assert not self._thread.is_alive(), "the writer did not stop"
        os.set_blocking(self._master, True)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _talk(self) -> None:
        poll = select.poll()
        poll.register(self._master, select.POLLOUT)
        poll.register(self._wake_r, select.POLLIN)
        offset = 0
        while not self._stopped:
            try:
                count = os.write(self._master, self._block[offset:])
            except BlockingIOError:
                poll.poll()  # room in the pty, or `stop`
                continue
            offset = (offset + count) % len(self._block)
            with self._changed:
                self._written += count
                self._changed.notify_all()


@contextlib.contextmanager
def chatter(master: int, line: bytes) -> Iterator[Chatter]:
    """A `Chatter` talking on `master` for the length of the block."""
    talking = Chatter(master, line)
    talking.start()
    try:
        yield talking
    finally:
        talking.stop()
