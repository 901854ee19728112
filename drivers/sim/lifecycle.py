"""What every simulator shares: `async with` stops it, and its update task stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self


async def cancel_task(task: asyncio.Task[None] | None) -> None:
    """Cancel a simulator's background task and wait until it has ended."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Simulator:
    """Base of every simulator: `async with` starts it (when `starts_on_enter`) and stops it."""

    starts_on_enter = True

    async def start(self) -> None:
        """Start serving; simulators that are started by a factory leave this as is."""

    async def stop(self) -> None:
        """Stop serving; safe to call twice."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        if self.starts_on_enter:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
