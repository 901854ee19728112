"""The serving collector announces on the live feed each alarm raised ahead that came due.

An alarm raised by an event stamped past `ingest.ahead_allowance` beyond the collector's clock
is on the feed as not active; nothing arrives when that clock comes within the allowance of its
raise, so this task sweeps every ACTIVATION_EVERY seconds (`collector.feed.due` decides what,
the storage writes it) and rings the commit signal when it wrote: streams send the alarm again,
active, within about that long of the moment.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final

import structlog

from collector.feed.due import ActivationWindow
from collector.feed.wakeup import CommitSignal
from collector.storage.base import StorageError
from collector.storage.capabilities import AlarmActivations

ACTIVATION_EVERY: Final = 1.0
"""Seconds between sweeps: how late the feed may say an alarm raised ahead is active."""

log = structlog.get_logger("collector.feed")


async def announce_periodically(
    feed: AlarmActivations,
    clock: Callable[[], float],
    allowance: float,
    commits: CommitSignal,
    every: float = ACTIVATION_EVERY,
) -> None:
    """Sweep now and every `every` seconds, until cancelled.

    A failed sweep is logged and its window looked at again by the next: late, not lost.
    """
    window = ActivationWindow()
    while True:
        now = clock()
        try:
            announced = await feed.announce_activations(window.sweep(now, allowance))
        except StorageError as exc:
            log.warning("alarm_activation_sweep_failed", error=str(exc), retry_in=every)
        else:
            window = window.after(now, announced.head)
            if announced.alarms:
                log.info(
                    "alarms_raised_ahead_became_active",
                    alarms=len(announced.alarms),
                    first=[f"{a.gateway}/{a.alarm_id}" for a in announced.alarms[:5]],
                )
                commits.notify()
        await asyncio.sleep(every)
