"""A hook at the moment this process is about to take an outbox's epoch lock.

Races with another process's epoch start (`edge-agent backfill` opening the outbox) are shown
by letting that process go on exactly there: the agent's start (`Outbox.start_new_epoch`)
has decided, the lock (`EpochLock.held`) is not taken yet. No sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest

from edge_agent.shell.outbox_epoch_lock import EpochLock


@contextmanager
def before_the_epoch_lock(first: Callable[[], Awaitable[None]]) -> Iterator[None]:
    """While inside, this process's first `EpochLock.held` awaits `first()`, then takes it."""
    held = EpochLock.held
    done: list[bool] = []

    @asynccontextmanager
    async def after_first(
        lock: EpochLock, *, wait: bool = True, stop: asyncio.Event | None = None
    ) -> AsyncIterator[None]:
        if not done:
            done.append(True)
            await first()
        async with held(lock, wait=wait, stop=stop):
            yield

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EpochLock, "held", after_first)
        yield
