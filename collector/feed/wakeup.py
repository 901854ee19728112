"""Waking live streams when the ingest shell has committed a batch (no busy polling).

`CommitSignal` is the interface: a generation counter that `notify()` advances after each
commit, and `wait_beyond(generation, within)` for a stream that has read everything up to
`generation`. Reading the generation *before* querying the database and waiting beyond it
afterwards loses no commit: one that lands in between has advanced the counter already.

`LocalCommitSignal` serves one process (the runtime owns one; the ingest loop and the stream
route share it). With several collector processes on one PostgreSQL database, the backend
rings the same interface from LISTEN/NOTIFY (see `collector.storage.capabilities`); streams
also re-check the database on their heartbeat, so a commit nobody signalled is late, never
lost.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class CommitSignal(Protocol):
    """**Protocol**: a counter of commits that streams can wait on."""

    @property
    def generation(self) -> int:
        """How many commits were signalled so far."""
        ...

    @property
    def closed(self) -> bool:
        """Whether the collector is stopping (streams end)."""
        ...

    def notify(self) -> None:
        """Signal one more commit: wake every waiter."""
        ...

    def close(self) -> None:
        """Wake every waiter for good: the collector stops, streams should end."""
        ...

    async def wait_beyond(self, generation: int, within: float) -> bool:
        """Wait until a commit after `generation` (True) or `within` seconds pass (False).

        Returns at once when that commit happened already or the signal is closed.
        """
        ...


class LocalCommitSignal:
    """The CommitSignal of one process: one asyncio.Event per generation."""

    def __init__(self) -> None:
        self._generation = 0
        self._closed = False
        self._next = asyncio.Event()

    @property
    def generation(self) -> int:
        """How many commits were signalled so far."""
        return self._generation

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._closed

    def notify(self) -> None:
        """Signal one more commit: wake every waiter."""
        self._generation += 1
        woken, self._next = self._next, asyncio.Event()
        woken.set()

    def close(self) -> None:
        """Wake every waiter for good."""
        self._closed = True
        self._next.set()

    async def wait_beyond(self, generation: int, within: float) -> bool:
        """Wait for a commit after `generation`, or `within` seconds."""
        if self._closed or self._generation > generation:
            return True
        try:
            async with asyncio.timeout(within):
                await self._next.wait()
        except TimeoutError:
            return False
        return True
