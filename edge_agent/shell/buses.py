"""Modbus RTU buses: one `RtuBus` per serial port, shared by its slaves, and how busy each is.

Every `modbus_rtu` device with the same `port` is a slave on one RS-485 line, so the agent
opens one `RtuBus` per port (`RtuBuses`, owned by the composition root) and gives it to the
driver of each slave. The bus runs one transaction at a time; each device still has its own
poll task, so a silent slave delays the others by at most one timeout per cycle.

Utilization is reported twice:

* planned, from the devices' plans (`edge_agent.core.rtu_plan.plan_buses`, pure): the read
  plans of the slaves, their poll intervals and the line's baud rate give the fraction of time
  the bus must be busy, and the same with the worst single silent slave. The agent logs
  `rtu_bus_planned` at start (`log_planned`); `edge-agent check` and `status` print it.
* measured, from the bus's own busy-time counter (`report_utilization`): the agent logs
  `rtu_bus_utilization` every `every` seconds with the transactions, timeouts and errors of
  the period. Above `UTILIZATION_WARNING` both events are warnings: beyond about 0.7 one
  silent slave is enough to make the others late.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping, Sequence

import structlog

from drivers.modbus.rtu_bus import BusStats, RtuBus
from drivers.serial.settings import SerialSettings
from edge_agent.core.rtu_plan import UTILIZATION_WARNING, BusPlan

log = structlog.get_logger("edge_agent.buses")

REPORT_EVERY = 60.0
"""Seconds between two measured-utilization reports of the agent."""


def log_planned(plans: Sequence[BusPlan]) -> None:
    """Log each bus's planned load (`rtu_bus_planned`); a warning when it is too high."""
    for plan in plans:
        fields = {
            "port": plan.port,
            "line": plan.line,
            "devices": list(plan.devices),
            "requests_per_cycle": plan.requests_per_cycle,
            "utilization": round(plan.utilization, 4),
            "one_silent": round(plan.one_silent, 4),
        }
        if plan.utilization > UTILIZATION_WARNING:
            log.warning("rtu_bus_planned", **fields, limit=UTILIZATION_WARNING)
        else:
            log.info("rtu_bus_planned", **fields)


class RtuBuses:
    """The RTU buses of one agent: one per serial port, created on first use."""

    def __init__(self) -> None:
        self._buses: dict[str, RtuBus] = {}

    def bus_for(self, device_id: str, line: SerialSettings) -> RtuBus:
        """Return the bus of the line's port, creating it for the first slave.

        Raises:
            ValueError: the device's line settings differ from the bus's (the config loader
                refuses such a site map, so this is a bug); its path may be another of the
                bus's port.
        """
        # /dev/serial/by-id/... and /dev/ttyUSB0 may name one adapter: one wire, one lock.
        wire = os.path.realpath(line.port)
        bus = self._buses.get(wire)
        if bus is None:
            bus = self._buses[wire] = RtuBus(line)
        elif dataclasses.replace(bus.settings, port=line.port) != line:
            raise ValueError(f"{device_id}: {line} differs from the bus's {bus.settings}")
        return bus

    def __iter__(self) -> Iterator[RtuBus]:
        return iter(self._buses.values())

    def __len__(self) -> int:
        return len(self._buses)

    def by_port(self) -> Mapping[str, RtuBus]:
        """Return the buses by port."""
        return dict(self._buses)

    async def close(self) -> None:
        """Close every port; call after every driver of the buses has closed.

        A driver detaches on close and the last one closes the port; this catches a port
        left open by a driver that never closed, so shutdown never leaks a file descriptor.
        """
        for bus in self._buses.values():
            while bus.is_open:  # each detach drops one registration; the last closes
                await bus.detach()


def utilization_report(port: str, before: BusStats, now: BusStats) -> dict[str, object]:
    """The fields of one `rtu_bus_utilization` event for the period between two snapshots."""
    return {
        "port": port,
        "seconds": round(now.t_mono - before.t_mono, 1),
        "utilization": round(now.utilization_since(before), 4),
        "transactions": now.transactions - before.transactions,
        "timeouts": now.timeouts - before.timeouts,
        "errors": now.errors - before.errors,
        "stray_bytes": now.stray_bytes - before.stray_bytes,
    }


def _no_gauge(_port: str, _utilization: float) -> None:
    """Keep nothing (an agent without metrics)."""


async def report_utilization(
    buses: RtuBuses,
    every: float = REPORT_EVERY,
    on_report: Callable[[str, float], None] = _no_gauge,
) -> None:
    """Log each bus's measured utilization every `every` seconds, forever; cancel to stop.

    `on_report` gets each (port, utilization over the period) too: the metrics gauge.
    """
    loop = asyncio.get_running_loop()
    previous = {port: bus.stats() for port, bus in buses.by_port().items()}
    next_report = loop.time() + every
    while True:
        await asyncio.sleep(max(0.0, next_report - loop.time()))
        next_report += every
        for port, bus in buses.by_port().items():
            now = bus.stats()
            before = previous.get(port, now)
            previous[port] = now
            fields = utilization_report(port, before, now)
            on_report(port, now.utilization_since(before))
            if now.utilization_since(before) > UTILIZATION_WARNING:
                log.warning("rtu_bus_utilization", **fields, limit=UTILIZATION_WARNING)
            else:
                log.info("rtu_bus_utilization", **fields)
