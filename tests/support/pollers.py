"""A `DevicePoller` built as the agent's runtime builds one, for tests that poll real servers.

The runtime looks each point's indicator up in the catalogue and hands the poller a synced
clock; the tests that drive a poller against a simulator want the same poller with their own
interval, sink and backoff, without writing that out again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence

from drivers.base import Driver
from edge_agent.core.points import ResolvedPoint
from edge_agent.shell.poller import DevicePoller, PolledPoint, Sink
from simulators.lifecycle import cancel_task
from specs.catalogue import default_catalogue


def polled_points(points: Sequence[ResolvedPoint]) -> dict[str, PolledPoint]:
    """Each point with its indicator from the shipped catalogue, by point code."""
    catalogue = default_catalogue()
    polled = {}
    for point in points:
        indicator = catalogue.get(point.quota)
        assert indicator is not None, f"{point.quota} is not in the shipped catalogue"
        polled[point.point] = PolledPoint(point, indicator)
    return polled


def device_poller(
    driver: Driver,
    polled: dict[str, PolledPoint],
    *,
    interval: float,
    sink: Sink,
    backoff: Callable[[], Iterator[float]],
    wall_clock: Callable[[], float] = time.time,
) -> DevicePoller:
    """A poller of `driver` for `polled` (see `polled_points`) whose clock is synced."""
    return DevicePoller(
        driver,
        polled,
        interval=interval,
        sink=sink,
        clock_synced=lambda: True,
        backoff=backoff,
        wall_clock=wall_clock,
    )


@contextlib.asynccontextmanager
async def running(poller: DevicePoller) -> AsyncIterator[asyncio.Task[None]]:
    """`poller.run()` as a task until the block ends; then it is cancelled and awaited."""
    task = asyncio.create_task(poller.run(), name="poller-under-test")
    try:
        yield task
    finally:
        await cancel_task(task)
