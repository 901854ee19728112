"""From the plan's devices to their pollers: each device's driver built, counted and polled.

Devices go one way: each device's driver settings (its kind's pure mapping, made when the plan
was compiled) are built into a driver by the `build` its kind named (a Modbus RTU slave joins
the shared bus of its port, `RtuBuses`), and handed to a `DevicePoller` with the device's
points, cadence, backoff and, when the agent serves metrics, its counters.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import structlog

from edge_agent.core.plan import AgentPlan, DevicePlan
from edge_agent.core.points import ResolvedPoint
from edge_agent.shell.buses import RtuBuses
from edge_agent.shell.host import clock_synchronized
from edge_agent.shell.poller import DevicePoller, PolledPoint, queue_sink
from hostkit.backoff import backoff_delays
from specs.records import Record

if TYPE_CHECKING:
    from drivers.base import Driver
    from edge_agent.shell.metrics import AgentMetrics

# The composition root's logger name, as before the devices had a module of their own.
log = structlog.get_logger("edge_agent.runtime")

_BUILDERS = ("drivers.", "edge_agent.")
"""Packages a plan's `build` may name: this project's own."""


def _not_counted(_kind: str) -> None:
    """A device error without metrics: the poller logs it, nothing counts it."""


def build_driver(device: DevicePlan, buses: RtuBuses | None = None) -> Driver:
    """The driver of `device`, built by its kind's `build` from its settings.

    Raises:
        LookupError: `build` names nothing of this project.
        TypeError: `build` names no function (a plan of another version).
    """
    module, _, name = device.build.partition(":")
    if not module.startswith(_BUILDERS):
        raise LookupError(f"{device.id}: {device.build} is not a driver kind's build")
    builder = getattr(importlib.import_module(module), name, None)
    if not callable(builder):
        raise TypeError(f"{device.id}: {device.build} builds no driver")
    driver: Driver = builder(device.settings, buses)
    return driver


def device_pollers(
    plan: AgentPlan,
    queue: asyncio.Queue[Record],
    buses: RtuBuses,
    metrics: AgentMetrics | None,
    *,
    good: asyncio.Event,
) -> list[DevicePoller]:
    """A poller per device of `plan`, in its order, each putting its readings into `queue`.

    `good` is set once a good reading is queued (a pushed map's probation ends); the device's
    start warnings are logged here, once.
    """
    by_device: dict[str, list[ResolvedPoint]] = {}
    for point in plan.points:
        by_device.setdefault(point.device_id, []).append(point)
    pollers = []
    for device in plan.devices:
        polled = {
            point.point: PolledPoint(point, plan.indicators[point.quota])
            for point in by_device.get(device.id, [])
        }
        for warning in device.warnings:
            log.warning(warning.event, **warning.fields)
        sink = queue_sink(queue, good)
        on_error: Callable[[str], None] = _not_counted
        if metrics is not None:
            sink, on_error = metrics.counting(device.id, sink), metrics.device_errors(device.id)
        pollers.append(
            DevicePoller(
                build_driver(device, buses),
                polled,
                interval=device.poll,
                sink=sink,
                clock_synced=clock_synchronized,
                backoff=partial(
                    backoff_delays, initial=device.backoff.initial, cap=device.backoff.cap
                ),
                on_error=on_error,
            )
        )
    return pollers


async def every_device_polled(pollers: list[DevicePoller]) -> None:
    """Return once every poller has tried its device once, answered or not."""
    for poller in pollers:
        await poller.first_cycle_done.wait()
