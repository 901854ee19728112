"""Keep a task's cancellation when a library loses it."""

from __future__ import annotations

import asyncio


def raise_if_cancelling() -> None:
    """Raise CancelledError when this task was cancelled and the cancellation got lost.

    Two libraries lose one: aiomqtt waits for a PUBACK with asyncio.wait_for, which on
    Python 3.11 returns the result instead of raising when the cancellation lands in the loop
    iteration the PUBACK does; and a cancellation inside an asyncpg transaction closes the
    connection, so the transaction's exit raises InterfaceError in place of CancelledError.
    A retry loop that goes on after either keeps a stopping process alive for good (a
    `collector serve` retried ingest against its dropped database for minutes after
    SIGTERM). The task still counts the cancellation (`cancelling()`): raise it again here,
    first thing in every retry path.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
