"""The planned load of each Modbus RTU bus of a site, from its devices' plans alone (pure).

The read plans of a port's slaves, their poll intervals and the line's baud rate give the
fraction of time the bus must be busy (`timing.bus_utilization`), and the same with the
worst single silent slave, which costs a whole timeout instead of its cycle. The agent logs
it at start (`edge_agent.shell.buses.log_planned`); `edge-agent check` and `status` print it.

It reads what the Modbus RTU kind already made of each device (`RtuSettings`, carried in its
`DevicePlan`), never the site map or the kinds: the plan's types sit below the kinds that
fill them, so the path from the map to the drivers reads one way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from drivers.modbus.build import RtuSettings
from drivers.modbus.plan import plan_reads
from drivers.modbus.timing import bus_utilization, rtu_timeout_seconds
from drivers.serial.settings import SerialSettings

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


class PolledDevice(Protocol):
    """What a bus plan reads of a device: its poll interval and its driver's settings."""

    @property
    def poll(self) -> float:
        """Seconds between reads."""
        ...

    @property
    def settings(self) -> object:
        """Its kind's settings: `RtuSettings` for a slave of an RTU bus."""
        ...


def plan_buses(
    devices: Sequence[PolledDevice],
    *,
    wire_of: Callable[[str], str] = str,
) -> tuple[BusPlan, ...]:
    """Compute the planned load of every RTU bus of the site, in order of first use (pure).

    `devices` are the site's device plans (`DevicePlan`), in the map's order; the slaves of
    one bus are those whose port is one port by `wire_of` (the callers pass
    `os.path.realpath`, as the agent opens one bus per real port); a bus is named by the
    path its first slave gives.
    """
    slaves: dict[str, list[tuple[RtuSettings, float]]] = {}
    for device in devices:
        if isinstance(device.settings, RtuSettings):
            slaves.setdefault(wire_of(device.settings.line.port), []).append(
                (device.settings, device.poll)
            )
    plans: list[BusPlan] = []
    for bus in slaves.values():
        settings = bus[0][0].line
        reads = [plan_reads(s.slave.points, max_gap=s.slave.max_gap) for s, _ in bus]
        polls = [poll for _, poll in bus]
        total = bus_utilization(reads, polls, settings)
        worst = 0.0
        for index, (slave_settings, poll) in enumerate(bus):
            own = bus_utilization([reads[index]], [poll], settings)
            silent = rtu_timeout_seconds(slave_settings.slave.timeout, settings)
            worst = max(worst, total - own + silent / poll)
        plans.append(
            BusPlan(
                port=settings.port,
                settings=settings,
                devices=tuple(s.slave.device_id for s, _ in bus),
                requests_per_cycle=sum(len(r) for r in reads),
                utilization=total,
                one_silent=worst,
            )
        )
    return tuple(plans)
