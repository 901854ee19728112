"""Work awaited to its end even when the task awaiting it is cancelled, again and again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextlib import suppress
from typing import TypeVar

_Done = TypeVar("_Done")


async def to_its_end(work: Awaitable[_Done]) -> _Done:
    """`work` run to its end: a cancellation of the awaiting task waits for it, then is raised.

    For steps that must not be left half way (a journal's read-modify-write under the locks
    its caller holds, a proof written again): a stop cancels the agent's tasks again every
    0.25 s (`shutdown._stop_tasks`), and each cancellation meanwhile is waited through.
    """
    running = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        while not running.done():
            with suppress(asyncio.CancelledError):
                await asyncio.wait((running,))
        raise
