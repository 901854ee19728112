"""A batch less the blocks its storage defers: the rest is stored in the same ingest.

On PostgreSQL one ingest makes at most MONTHS_PER_INGEST months' partitions
(collector.storage.postgres.partitions): a block naming more (a reset clock, a hostile
gateway) waits for its resend, which makes the next ones. The storage then raises
BlocksDeferredError naming those blocks, having committed nothing but the partitions, so the
batch is ingested again at once without them: the other gateways' blocks that arrived beside
the flood are stored and ACKed now, and only the deferred blocks go unanswered.
"""

from __future__ import annotations

from dataclasses import replace

import structlog

from collector.model import BatchResult, IngestBatch
from collector.storage.base import BlocksDeferredError, Storage

log = structlog.get_logger("collector.ingest")


async def ingest_deferring(storage: Storage, batch: IngestBatch) -> tuple[IngestBatch, BatchResult]:
    """Commit `batch`, less the blocks the storage defers; the batch committed and its result.

    Each round leaves out at least one block, so this ends.
    """
    while True:
        try:
            return batch, await storage.ingest(batch)
        except BlocksDeferredError as exc:
            if not exc.deferred:
                raise
            deferred = [b for i, b in enumerate(batch.blocks) if i in exc.deferred]
            log.warning(
                "blocks_deferred",
                blocks=[
                    f"{b.block.header.gateway}/{b.block.header.epoch}/{b.block.header.seq}"
                    for b in deferred
                ],
                stored_without_them=len(batch.blocks) - len(deferred),
                reason=str(exc),
            )
            kept = [b for i, b in enumerate(batch.blocks) if i not in exc.deferred]
            batch = replace(batch, blocks=kept)
