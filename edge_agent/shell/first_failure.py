"""Run coroutines side by side until the first one fails, and never swallow a cancellation.

`asyncio.TaskGroup` on Python 3.11 drops the cancellation of the task that waits in it when
a child fails in the same turn of the loop: the group then raises the child's error, and the
cancelled task carries on (the publisher reconnected instead of stopping, and shutdown gave
up on it). Here a cancellation of the waiting task always wins: the children are cancelled,
awaited, and the CancelledError goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


async def first_failure(
    *work: tuple[str, Coroutine[Any, Any, None]], ending: Callable[[], None] | None = None
) -> None:
    """Run each (name, coroutine) as a task until one ends; re-raise its error, if any.

    When one ends (failing or not), the others are cancelled and awaited before this returns
    or raises. Cancelling the caller cancels every child and raises CancelledError.
    `ending`, when given, is called before the children are cancelled: a child whose
    cancellation a library swallowed (aiomqtt's wait_for on 3.11) can tell it was meant.
    """
    tasks = [asyncio.create_task(coroutine, name=name) for name, coroutine in work]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if ending is not None:
            ending()
        for task in tasks:
            task.cancel()
        # Shielded: a second cancellation of the caller must not leave children running.
        await asyncio.shield(asyncio.wait(tasks))
    for task in tasks:
        if task in done and not task.cancelled() and (error := task.exception()) is not None:
            raise error
