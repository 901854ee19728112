"""Re-verifying a storage's blocks page by page: memory stays flat whatever the count."""

from __future__ import annotations

from typing import Final

from collector.readmodel import Scope, pages
from collector.storage.capabilities import BlockArchive
from collector.verify.core import VerifyReport, key_ring, tally

PAGE: Final = 256
"""Blocks per storage call: a page's signatures take milliseconds, so the loop stays live."""


async def verify_stored(
    archive: BlockArchive,
    scope: Scope,
    *,
    gateway: str | None = None,
    t_from: float | None = None,
    t_to: float | None = None,
) -> VerifyReport:
    """Check every stored block of `gateway` (None: every gateway in scope) received in range.

    Keys come from the registry, revoked ones included: a revoked key still verifies what it
    signed before its revocation.
    """
    # Every key, so that a block under another gateway's key is named as such.
    ring = key_ring(await archive.keys())
    report = VerifyReport()
    async for page in pages(
        lambda after: archive.stored_blocks(
            scope, gateway=gateway, t_from=t_from, t_to=t_to, after=after, limit=PAGE
        ),
        lambda block: (block.gateway, block.epoch, block.seq),
    ):
        for block in page.items:
            report = tally(report, block, ring)
    return report
