"""The planned load of each Modbus RTU bus of a site, from its configuration alone (pure).

The read plans of a port's slaves, their poll intervals and the line's baud rate give the
fraction of time the bus must be busy (`timing.bus_utilization`), and the same with the
worst single silent slave, which costs a whole timeout instead of its cycle. The agent logs
it at start (`edge_agent.shell.buses.log_planned`); `edge-agent check` and `status` print it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.modbus.plan import plan_reads
from drivers.modbus.timing import bus_utilization, rtu_timeout_seconds
from drivers.serial.settings import SerialSettings
from edge_agent.core.points import ResolvedPoint

if TYPE_CHECKING:
    from edge_agent.config import SiteConfig

UTILIZATION_WARNING = 0.7
"""Above this fraction of busy time a bus has no room left for one silent slave's timeouts."""


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


def plan_buses(
    config: SiteConfig,
    points: Sequence[ResolvedPoint],
    *,
    wire_of: Callable[[str], str] = str,
) -> tuple[BusPlan, ...]:
    """Compute the planned load of every RTU bus of the site, in order of first use (pure).

    The slaves of one bus are those whose `port` is one port by `wire_of` (the callers pass
    `os.path.realpath`, as the agent opens one bus per real port); a bus is named by the
    path its first slave gives.
    """
    # Here, not at the top: the running agent holds `BusPlan`s, computed before it started,
    # and never the site map's models (pydantic: G7).
    from edge_agent.kinds.modbus.config import ModbusRtuDevice  # noqa: PLC0415
    from edge_agent.kinds.modbus.kind import rtu_settings  # noqa: PLC0415

    by_device: dict[str, list[ResolvedPoint]] = {}
    for point in points:
        by_device.setdefault(point.device_id, []).append(point)
    slaves: dict[str, list[ModbusRtuDevice]] = {}
    for device in config.devices:
        if isinstance(device, ModbusRtuDevice):
            slaves.setdefault(wire_of(device.port), []).append(device)
    plans: list[BusPlan] = []
    for devices in slaves.values():
        slave_settings = [rtu_settings(d, by_device.get(d.id, [])) for d in devices]
        settings = slave_settings[0].line
        reads = [plan_reads(s.slave.points, max_gap=s.slave.max_gap) for s in slave_settings]
        polls = [d.poll for d in devices]
        total = bus_utilization(reads, polls, settings)
        worst = 0.0
        for index, device in enumerate(devices):
            own = bus_utilization([reads[index]], [device.poll], settings)
            silent = rtu_timeout_seconds(device.timeout, settings)
            worst = max(worst, total - own + silent / device.poll)
        plans.append(
            BusPlan(
                port=devices[0].port,
                settings=settings,
                devices=tuple(d.id for d in devices),
                requests_per_cycle=sum(len(r) for r in reads),
                utilization=total,
                one_silent=worst,
            )
        )
    return tuple(plans)
