"""The log lines of a committed ingest batch: what it refused, stored, and stored ahead.

Anything that may publish on `up/` can make rejections as fast as the collector handles them,
and a gateway whose clock is wrong stamps every block ahead of the collector's: both are
logged a bounded number of times (hostkit.log_limit: the first of each gateway and reason in
a minute, 64 lines a minute at most), while their audit rows and counters count every one.
"""

from __future__ import annotations

import structlog

from collector.model import BatchResult, IngestBatch, Outcome
from hostkit.log_limit import LineLimit, warn_limited

log = structlog.get_logger("collector.ingest")


class BatchLog:
    """Logs each committed batch; `rejections` limits the `message_rejected` lines."""

    def __init__(self, rejections: LineLimit | None = None) -> None:
        self._rejections = rejections if rejections is not None else LineLimit()
        self._ahead = LineLimit()

    def committed(self, batch: IngestBatch, result: BatchResult) -> None:
        """The lines of one batch the storage has committed."""
        _log_rejections(batch, self._rejections)
        self._blocks(batch, result)
        self._readings_ahead(batch, result)
        for meta in batch.metas:
            log.info(
                "gateway_meta_stored",
                gateway=meta.meta.gateway,
                points=len(meta.points),
                issued_at=meta.meta.issued_at,
            )
            if meta.issued_at > meta.received_at + batch.ahead_allowance:
                # Stored and applied, ranked as if issued at arrival + allowance (storage.ahead).
                log.warning(
                    "meta_ahead_of_collector",
                    gateway=meta.meta.gateway,
                    issued_at=meta.meta.issued_at,
                    ahead_seconds=round(meta.issued_at - meta.received_at, 3),
                    allowance=batch.ahead_allowance,
                )
        for status in batch.statuses:
            log.debug("gateway_status_seen", gateway=status.gateway, online=status.online)

    def _blocks(self, batch: IngestBatch, result: BatchResult) -> None:
        for incoming, outcome in zip(batch.blocks, result.outcomes, strict=True):
            header = incoming.block.header
            fields = {
                "gateway": header.gateway,
                "epoch": header.epoch,
                "seq": header.seq,
                "payload_hash": incoming.block.digest,
            }
            if outcome is Outcome.STORED:
                log.debug("block_stored", records=len(incoming.block.records), **fields)
                for rejected in incoming.entries.rejected:
                    log.warning(
                        "record_rejected",
                        reason=rejected.reason.value,
                        detail=rejected.detail,
                        gateway=header.gateway,
                    )
            elif outcome is Outcome.DUPLICATE:
                log.info("block_duplicate", **fields)
            else:
                log.error("block_seq_conflict", **fields)

    def _readings_ahead(self, batch: IngestBatch, result: BatchResult) -> None:
        """One line per gateway and minute whose stored readings are ahead of the clock.

        `ahead_seconds`: how far the block's newest reading is past its arrival.
        """
        if not result.ahead:
            return
        for incoming, count in zip(batch.blocks, result.ahead, strict=True):
            if not count:
                continue
            header = incoming.block.header
            newest = max(r.t for r in incoming.entries.readings)
            warn_limited(
                log,
                self._ahead,
                header.gateway,
                "readings_ahead_of_collector",
                "readings_ahead_of_collector_unlogged",
                gateway=header.gateway,
                epoch=header.epoch,
                seq=header.seq,
                readings=count,
                ahead_seconds=round(newest - incoming.received_at, 3),
                allowance=batch.ahead_allowance,
            )


def _log_rejections(batch: IngestBatch, rejections: LineLimit) -> None:
    for audit in batch.audits:
        warn_limited(
            log,
            rejections,
            (audit.gateway or "", audit.reason),
            "message_rejected",
            "message_rejections_unlogged",
            reason=audit.reason.value,
            detail=audit.detail,
            topic=audit.topic,
            gateway=audit.gateway,
            payload_hash=audit.payload_hash,
        )
