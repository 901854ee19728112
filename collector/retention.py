"""The serving collector applies retention itself, at start and every few hours after."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Final

import structlog

from collector.storage import prune_storage
from collector.storage.base import StorageError
from collector.storage.retention import PruneReport, RetentionPolicy, first_kept
from specs.records import iso_time

RETENTION_EVERY: Final = 6 * 3600.0
"""Seconds between retention runs: months expire daily at most, once a month at least."""

log = structlog.get_logger("collector.retention")


async def apply_retention(
    url: str,
    policy: RetentionPolicy,
    clock: Callable[[], float],
    every: float = RETENTION_EVERY,
) -> None:
    """Prune `url` by `policy` now and every `every` seconds, until cancelled.

    A failed run is logged and retried at the next turn: retention is never urgent, and the
    readings it would drop are still stored.
    """
    while True:
        now = clock()
        try:
            report = await prune_storage(url, policy, now)
        except StorageError as exc:
            log.warning("retention_failed", error=str(exc), retry_in=every)
        else:
            if report.deleted:  # a pass that dropped audit rows alone says so too
                log.info("retention_applied", **dataclasses.asdict(report))
            _log_held_back(report, policy, now)
        await asyncio.sleep(every)


def _log_held_back(report: PruneReport, policy: RetentionPolicy, now: float) -> None:
    """A pass that kept months the clock alone would have let go says so, once per pass."""
    newest = report.held_back_to
    if newest is None or policy.raw_days is None:
        return
    log.warning(
        "retention_held_back",
        clock=iso_time(now),
        newest_reading=iso_time(newest),
        kept_from=iso_time(first_kept(newest, policy.raw_days)),
        clock_would_keep_from=iso_time(first_kept(now, policy.raw_days)),
    )
