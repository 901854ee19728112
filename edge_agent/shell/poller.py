"""One task per device: poll on a monotonic cadence, reconnect with backoff, never crash."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import structlog

from drivers.base import Driver, DriverError, Quality, RawSample
from edge_agent.core.normalize import normalize
from edge_agent.core.points import ResolvedPoint
from specs.catalogue import Indicator
from specs.records import Reading

log = structlog.get_logger("edge_agent.poller")


@dataclass(frozen=True, slots=True)
class PolledPoint:
    """A point as the poller needs it: its resolved config and its indicator."""

    point: ResolvedPoint
    indicator: Indicator


class DevicePoller:
    """Poll one device every `interval` seconds of the monotonic clock."""

    def __init__(
        self,
        driver: Driver,
        points: dict[str, PolledPoint],
        *,
        interval: float,
        sink: Callable[[Reading], Awaitable[None]],
        clock_synced: Callable[[], bool],
        backoff: Callable[[], Iterator[float]],
    ) -> None:
        self._driver = driver
        self._points = points
        self._interval = interval
        self._sink = sink
        self._clock_synced = clock_synced
        self._new_backoff = backoff
        self.cycles = 0

    async def run(self) -> None:
        """Poll forever; cancel to stop."""
        backoff = self._new_backoff()
        connected = False
        retry_at = 0.0
        next_tick = time.monotonic()
        try:
            while True:
                if not connected and time.monotonic() >= retry_at:
                    try:
                        await self._driver.connect()
                    except DriverError as exc:
                        retry_at = time.monotonic() + next(backoff)
                        log.warning(
                            "device_unreachable", device=self._driver.device_id, error=str(exc)
                        )
                    else:
                        connected = True
                        backoff = self._new_backoff()
                        log.info("device_connected", device=self._driver.device_id)
                if connected:
                    try:
                        samples = await self._driver.read()
                    except DriverError as exc:
                        connected = False
                        await self._driver.close()
                        retry_at = time.monotonic() + next(backoff)
                        log.warning(
                            "device_link_lost", device=self._driver.device_id, error=str(exc)
                        )
                        samples = self._bad_samples(f"link_lost: {exc}")
                else:
                    samples = self._bad_samples("link_down")
                await self._emit(samples)
                self.cycles += 1
                next_tick = self._next_tick(next_tick)
                await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
        finally:
            await self._driver.close()

    def _next_tick(self, previous: float) -> float:
        """The next slot of the cadence; slots already missed are skipped, not bunched."""
        target = previous + self._interval
        now = time.monotonic()
        if target < now:
            missed = int((now - target) // self._interval) + 1
            log.warning("poll_overrun", device=self._driver.device_id, missed=missed)
            target += missed * self._interval
        return target

    def _bad_samples(self, error: str) -> list[RawSample]:
        wall, mono = time.time(), time.monotonic()
        return [RawSample(key, None, Quality.BAD, wall, mono, error=error) for key in self._points]

    async def _emit(self, samples: list[RawSample]) -> None:
        synced = self._clock_synced()
        for sample in samples:
            polled = self._points.get(sample.key)
            if polled is None:
                continue
            await self._sink(normalize(sample, polled.point, polled.indicator, clock_synced=synced))
