"""Modbus RTU buses: one `RtuBus` per serial port, shared by its slaves, and how busy each is.

Every `modbus_rtu` device with the same `port` is a slave on one RS-485 line, so the agent
opens one `RtuBus` per port (`RtuBuses`, owned by the composition root) and gives it to the
driver of each slave. The bus runs one transaction at a time; each device still has its own
poll task, so a silent slave delays the others by at most one timeout per cycle.

Utilization is reported twice:

* planned, from the configuration (`plan_buses`, pure): the read plans of the slaves, their
  poll intervals and the line's baud rate give the fraction of time the bus must be busy
  (`timing.bus_utilization`), and the same with the worst single silent slave, which costs a
  whole timeout instead of its cycle. The agent logs `rtu_bus_planned` at start;
  `edge-agent check` and `edge-agent status` print it.
* measured, from the bus's own busy-time counter (`report_utilization`): the agent logs
  `rtu_bus_utilization` every `every` seconds with the transactions, timeouts and errors of
  the period. Above `UTILIZATION_WARNING` both events are warnings: beyond about 0.7 one
  silent slave is enough to make the others late.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import structlog

from drivers.modbus.plan import plan_reads
from drivers.modbus.rtu_bus import BusStats, RtuBus
from drivers.modbus.timing import bus_utilization, rtu_timeout_seconds
from drivers.serial.settings import SerialSettings
from edge_agent.config import ModbusRtuDevice, SiteConfig
from edge_agent.core.points import ResolvedPoint
from edge_agent.shell.devices import register_point, serial_settings

log = structlog.get_logger("edge_agent.buses")

UTILIZATION_WARNING = 0.7
"""Above this fraction of busy time a bus has no room left for one silent slave's timeouts."""

REPORT_EVERY = 60.0
"""Seconds between two measured-utilization reports of the agent."""


@dataclass(frozen=True, slots=True)
class BusPlan:
    """The computed load of one RTU bus.

    `utilization` is the fraction of time polling every slave at its interval needs;
    `one_silent` the same when the slave whose silence costs most stops answering (it then
    costs one timeout per cycle instead of its reads). Both above 1.0 mean the configured
    cadence cannot be kept.
    """

    port: str
    settings: SerialSettings
    devices: tuple[str, ...]
    requests_per_cycle: int
    utilization: float
    one_silent: float

    @property
    def line(self) -> str:
        """The line settings as technicians write them, such as ``9600 8E1``."""
        s = self.settings
        return f"{s.baudrate} {s.bytesize}{s.parity}{s.stopbits}"

    def describe(self) -> str:
        """One line for `edge-agent check` and `status`."""
        return (
            f"rtu bus {self.port} ({self.line}): {len(self.devices)} "
            f"slave{'s' * (len(self.devices) != 1)}, {self.requests_per_cycle} "
            f"request{'s' * (self.requests_per_cycle != 1)} per cycle, planned utilization "
            f"{self.utilization:.1%} ({self.one_silent:.1%} with one slave silent)"
        )


def plan_buses(config: SiteConfig, points: Sequence[ResolvedPoint]) -> tuple[BusPlan, ...]:
    """Compute the planned load of every RTU bus of the site, in order of first use (pure)."""
    by_device: dict[str, list[ResolvedPoint]] = {}
    for point in points:
        by_device.setdefault(point.device_id, []).append(point)
    slaves: dict[str, list[ModbusRtuDevice]] = {}
    for device in config.devices:
        if isinstance(device, ModbusRtuDevice):
            slaves.setdefault(device.port, []).append(device)
    plans: list[BusPlan] = []
    for port, devices in slaves.items():
        settings = serial_settings(devices[0])
        reads = [
            plan_reads(
                [register_point(p) for p in by_device.get(d.id, [])],
                max_gap=d.max_gap,
            )
            for d in devices
        ]
        polls = [d.poll for d in devices]
        line = (settings.baudrate, str(settings.parity), settings.stopbits)
        total = bus_utilization(reads, polls, *line, bytesize=settings.bytesize)
        worst = 0.0
        for index, device in enumerate(devices):
            own = bus_utilization([reads[index]], [device.poll], *line, bytesize=settings.bytesize)
            silent = rtu_timeout_seconds(device.timeout, *line, bytesize=settings.bytesize)
            worst = max(worst, total - own + silent / device.poll)
        plans.append(
            BusPlan(
                port=port,
                settings=settings,
                devices=tuple(d.id for d in devices),
                requests_per_cycle=sum(len(r) for r in reads),
                utilization=total,
                one_silent=worst,
            )
        )
    return tuple(plans)


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

    def bus_for(self, device: ModbusRtuDevice) -> RtuBus:
        """Return the bus of the device's port, creating it for the first slave.

        Raises:
            ValueError: the device's line settings differ from the bus's (the config loader
                refuses such a site map, so this is a bug).
        """
        settings = serial_settings(device)
        # /dev/serial/by-id/... and /dev/ttyUSB0 may name one adapter: one wire, one lock.
        wire = os.path.realpath(device.port)
        bus = self._buses.get(wire)
        if bus is None:
            bus = self._buses[wire] = RtuBus(settings)
        elif bus.settings != settings:
            raise ValueError(f"{device.id}: {settings} differs from the bus's {bus.settings}")
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
