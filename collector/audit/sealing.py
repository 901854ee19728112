"""The serving collector seals the audit chain's finished minutes by itself, every minute.

Ingest seals what is due whenever it writes rejections, and admin actions seal as they are
recorded; this task covers quiet times, so that a minute's rejection rows join the chain
within about a minute of its end even when nothing else is written.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from collector.audit.chain import MINUTE
from collector.storage.base import StorageError
from collector.storage.capabilities import AuditTrail

log = structlog.get_logger("collector.audit")


async def seal_periodically(
    trail: AuditTrail, clock: Callable[[], float], every: float = MINUTE
) -> None:
    """Seal the due rows now and every `every` seconds, until cancelled.

    A failed turn is logged and tried again at the next: the rows stay open, not lost.
    """
    while True:
        try:
            sealed = await trail.seal_audit(clock())
        except StorageError as exc:
            log.warning("audit_seal_failed", error=str(exc), retry_in=every)
        else:
            if sealed:
                log.info("audit_rows_sealed", rows=sealed)
        await asyncio.sleep(every)
