"""The collector's Prometheus metrics (DESIGN section 11), served on `GET /metrics`.

Three kinds of figures:

* counted by the ingest loop after each committed batch (`batch_committed`): blocks by
  result, readings stored, readings left out as past retention, readings stored ahead of the
  collector's clock (collector.storage.ahead), and the ingest lag of each
  stored block (commit time minus the block's `sealed_at`: how old data is when it becomes
  readable here, so a backlog or a gateway sending after an outage shows as lag);
* counted by the API server: connections ended because their client took nothing of what
  it was sent for `api.limits.send_timeout` (`connection_stalled`);
* read from the database when scraped (`refresh`): gateways online and open gaps. They are
  the database's, not this process's: N collectors sharing one PostgreSQL each report the
  same values (a dashboard takes `max`, not `sum`, of them), while the counters are per
  process (a dashboard sums them).

Each collector has its own `CollectorRegistry` (not prometheus_client's global one), so that
several collectors in one process (tests) count apart.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Sequence
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from collector.api.core import is_online
from collector.model import BatchResult, IncomingBlock, IngestBatch, Outcome, Reason
from collector.readmodel import EVERYTHING, pages
from collector.storage.base import Storage
from specs.records import RecordFormatError, parse_iso_time

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The Prometheus text format every Prometheus (2.x and 3.x) parses; the names here all fit it."""

REJECTED: Final = "rejected"
"""The `result` of a block message refused before storage (its reason is in the audit)."""

LEFT_OUT: Final = (Reason.UNKNOWN_QUOTA, Reason.UNKNOWN_UNIT, Reason.PAST_RETENTION)
"""The `result`s of a block stored with something left out (audited with that reason): a
reading or alarm event of a quota the catalogue lacks, a reading of a unit its indicator does
not take, readings before retention's mark. A block counts once, under the first it has: a
catalogue out of step goes on until someone acts, a backlog older than retention passes."""

BLOCK_RESULTS: Final = (*(o.value for o in Outcome), *(r.value for r in LEFT_OUT), REJECTED)

LAG_BUCKETS: Final = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0)
"""Seconds: a live site's blocks land in the first few, a day's backlog in the last."""

_BLOCK_TOPIC_KIND: Final = "/up/block"
_PAGE: Final = 1000


def _left_out(result: BatchResult) -> Sequence[int]:
    """Per block, its readings left out as past_retention (zeros when none was)."""
    return result.past_retention or (0,) * len(result.outcomes)


def _block_result(incoming: IncomingBlock, outcome: Outcome, past_retention: int) -> str:
    """A stored block with something left out counts under the first LEFT_OUT reason it has."""
    if outcome is not Outcome.STORED:
        return outcome.value
    reasons = {audit.reason for audit in incoming.entries.rejected}
    if past_retention:
        reasons.add(Reason.PAST_RETENTION)
    return next((reason.value for reason in LEFT_OUT if reason in reasons), outcome.value)


def block_results(batch: IngestBatch, result: BatchResult) -> Tally[str]:
    """How many blocks of a committed batch ended with each `result` (pure)."""
    results = Tally(
        _block_result(incoming, outcome, left_out)
        for incoming, outcome, left_out in zip(
            batch.blocks, result.outcomes, _left_out(result), strict=True
        )
    )
    rejected = sum(1 for audit in batch.audits if audit.topic.endswith(_BLOCK_TOPIC_KIND))
    if rejected:
        results[REJECTED] = rejected
    return results


def stored_readings(batch: IngestBatch, result: BatchResult) -> int:
    """Readings of the blocks this batch stored, as normalized for the readings table (pure).

    A reading whose (gateway, point, t) was stored already by another block is counted here
    although the table keeps the first (the audit names it as a duplicate or conflict). One
    left out as before retention's mark (audited past_retention) is not: it is counted apart.
    Nor is one left out for its quota or unit (normalization never put it in the entries).
    """
    return sum(
        len(incoming.entries.readings) - left_out
        for incoming, outcome, left_out in zip(
            batch.blocks, result.outcomes, _left_out(result), strict=True
        )
        if outcome.acknowledged and outcome is not Outcome.DUPLICATE
    )


def lags(batch: IngestBatch, outcomes: Sequence[Outcome], committed_at: float) -> list[float]:
    """Seconds from each stored block's `sealed_at` to `committed_at` (pure; never negative)."""
    found = []
    for incoming, outcome in zip(batch.blocks, outcomes, strict=True):
        if not outcome.acknowledged or outcome is Outcome.DUPLICATE:
            continue
        try:
            sealed_at = parse_iso_time(incoming.block.header.sealed_at)
        except RecordFormatError:  # the codec checked it; an unreadable one has no lag
            continue
        found.append(max(0.0, committed_at - sealed_at))
    return found


class CollectorMetrics:
    """The collector's metrics in their own registry; `exposition()` is the scrape's body."""

    def __init__(self, *, offline_after: float = 60.0) -> None:
        self.registry = CollectorRegistry()
        self._offline_after = offline_after
        self._blocks = Counter(
            "gz_collector_blocks_total",
            "Block messages handled, by result: stored (and its variants unknown_quota,"
            " unknown_unit, past_retention: stored with something left out, counted under the"
            " first of them it has), duplicate, seq_conflict, or rejected before storage.",
            ["result"],
            registry=self.registry,
        )
        for result in BLOCK_RESULTS:
            self._blocks.labels(result)  # each result shows from the start, at 0
        self._readings = Counter(
            "gz_collector_readings_stored_total",
            "Readings of the blocks stored by this collector process.",
            registry=self.registry,
        )
        self._past_retention = Counter(
            "gz_collector_readings_past_retention_total",
            "Readings left out of the blocks stored: of a month whose raw readings retention"
            " deleted (audited past_retention; not stored, not in the rollups).",
            registry=self.registry,
        )
        self._ahead = Counter(
            "gz_collector_readings_ahead_of_collector_total",
            "Readings stored stamped more than ingest.ahead_allowance past the collector's clock"
            " (a gateway clock wrong; audited ahead_of_collector, flagged so, counted stored too;"
            " not in latest nor the rollups).",
            registry=self.registry,
        )
        self._lag = Histogram(
            "gz_collector_ingest_lag_seconds",
            "Seconds from a block's sealing at the gateway to its commit here.",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self._stalled = Counter(
            "gz_collector_api_stalled_connections_total",
            "API connections ended because the client took no byte of what it was sent (the"
            " live stream, say) for api.limits.send_timeout.",
            registry=self.registry,
        )
        self._online = Gauge(
            "gz_collector_gateways_online",
            "Registered gateways with a recent sign of life (as GET /v1/gateways says online).",
            registry=self.registry,
        )
        self._gaps = Gauge(
            "gz_collector_gaps_open",
            "Open sequence gaps: blocks missing and still expected, over every gateway.",
            registry=self.registry,
        )

    def batch_committed(self, batch: IngestBatch, result: BatchResult, committed_at: float) -> None:
        """Count one batch the storage has committed."""
        for name, count in block_results(batch, result).items():
            self._blocks.labels(name).inc(count)
        self._readings.inc(stored_readings(batch, result))
        self._past_retention.inc(sum(result.past_retention))
        self._ahead.inc(sum(result.ahead))
        for lag in lags(batch, result.outcomes, committed_at):
            self._lag.observe(lag)

    def connection_stalled(self) -> None:
        """Count one API connection ended past `api.limits.send_timeout`."""
        self._stalled.inc()

    async def refresh(self, storage: Storage, now: float) -> None:
        """Read the gauges that live in the database (StorageError when it does not answer).

        One pass over the gateway list, a page at a time: the same query as GET /v1/gateways.
        """
        online = gaps = 0
        async for page in pages(
            lambda after: storage.gateway_views(EVERYTHING, after=after, limit=_PAGE),
            lambda view: (view.gateway,),
        ):
            for view in page.items:
                online += is_online(view, now, self._offline_after)
                gaps += view.gaps
        self._online.set(online)
        self._gaps.set(gaps)

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
