"""The agent's Prometheus metrics (DESIGN section 11), served on `metrics.listen` when set.

Counted as things happen: readings per device and quality (each poller's sink is wrapped),
device errors per device and kind (the poller's `on_error`), and each RTU bus's measured
utilization over the last report period (`buses.report_utilization`'s `on_report`). Read
when scraped: the outbox's undelivered blocks and the age of the oldest, and whether the
collector's ACKs leave out the signing key, and whether the last connect left the point
catalogue unsent as too large for the broker, the same figures `edge-agent status` prints.

The registry is the agent's own, not prometheus_client's global one, so that agents (and
tests) in one process count apart.
"""

from __future__ import annotations

import collections
import operator
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from edge_agent.shell.metrics_server import ScrapeFailedError
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.publisher import Publisher
from specs.records import Quality, Reading

_QUALITY_OF = operator.attrgetter("quality")
Sink = Callable[[Sequence[Reading]], Awaitable[None]]
"""A poller's sink: the readings of one cycle (edge_agent.shell.poller.Sink)."""


class AgentMetrics:
    """The agent's metrics in their own registry; every device shows from the start, at 0."""

    def __init__(self, devices: Sequence[str], clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        self._clock = clock
        self._readings = Counter(
            "gz_agent_readings_total",
            "Readings polled, by device and quality (good, uncertain, bad).",
            ["device", "quality"],
            registry=self.registry,
        )
        self._errors = Counter(
            "gz_agent_device_errors_total",
            "Failed connects and reads by device and kind (timeout, connection, protocol,"
            " decode, other), and points read bad in an answered read (kind point).",
            ["device", "kind"],
            registry=self.registry,
        )
        self._undelivered = Gauge(
            "gz_agent_outbox_undelivered_blocks",
            "Sealed blocks the collector has not acknowledged yet.",
            registry=self.registry,
        )
        self._oldest = Gauge(
            "gz_agent_outbox_oldest_undelivered_seconds",
            "Age of the oldest unacknowledged block (0 when every block is acknowledged).",
            registry=self.registry,
        )
        self._key_left_out = Gauge(
            "gz_agent_gateway_key_left_out",
            "1 while the collector's ACKs leave the key the agent signs with out of their"
            " `keys` (revoked, retired or never registered there: every block it signs is"
            " refused), else 0.",
            registry=self.registry,
        )
        self._meta_too_large = Gauge(
            "gz_agent_uplink_meta_too_large",
            "1 while the last connect left the point catalogue (up/meta) unsent as larger than"
            " the broker's Maximum Packet Size (the collector lacks it), else 0.",
            registry=self.registry,
        )
        self._bus = Gauge(
            "gz_agent_rtu_bus_utilization",
            "Fraction of time each Modbus RTU port was busy over the last report period.",
            ["port"],
            registry=self.registry,
        )
        for device in devices:
            for quality in Quality:
                self._readings.labels(device, quality.value)

    def counting(self, device: str, sink: Sink) -> Sink:
        """`sink` that first counts each reading of `device`, one increment per quality."""
        children = {quality: self._readings.labels(device, quality.value) for quality in Quality}

        async def count_then_sink(readings: Sequence[Reading]) -> None:
            # A counter takes a lock per increment: per cycle, not per reading.
            tally = collections.Counter(map(_QUALITY_OF, readings))  # counted in C
            for quality, count in tally.items():
                children[quality].inc(count)
            await sink(readings)

        return count_then_sink

    def device_errors(self, device: str) -> Callable[[str], None]:
        """The poller's `on_error` for `device` (kinds from `poller.error_kind`)."""

        def count(kind: str) -> None:
            self._errors.labels(device, kind).inc()

        return count

    def bus_utilization(self, port: str, utilization: float) -> None:
        """Keep a bus's utilization over its last report period (`report_utilization`)."""
        self._bus.labels(port).set(utilization)

    async def refresh(self, outbox: Outbox, publisher: Publisher | None = None) -> None:
        """Read the outbox (and publisher) gauges now (sqlite3.Error: the outbox unreadable)."""
        stats = await outbox.stats()
        oldest = stats.oldest_undelivered_sealed_at
        self._undelivered.set(stats.undelivered)
        self._oldest.set(0.0 if oldest is None else max(0.0, self._clock() - oldest))
        self._key_left_out.set(0.0 if outbox.delivery.key_left_out is None else 1.0)
        meta = None if publisher is None else publisher.meta_status
        self._meta_too_large.set(0.0 if meta is None or meta.sent else 1.0)

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry)

    def scraper(
        self, outbox: Outbox, publisher: Publisher | None = None
    ) -> Callable[[], Awaitable[bytes]]:
        """What `metrics_server.serve_metrics` answers a scrape with: refresh, then render."""

        async def scrape() -> bytes:
            try:
                await self.refresh(outbox, publisher)
            except sqlite3.Error as exc:
                raise ScrapeFailedError(f"the outbox cannot be read: {exc}") from exc
            return self.exposition()

        return scrape
