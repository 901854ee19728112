"""What the Modbus drivers are built from (frozen settings) and how (`build_tcp`, `build_rtu`).

The agent's runtime builds its drivers from these settings alone: it never imports the site
map's models (`edge_agent.kinds.modbus.kind` maps a checked device to them). The driver
modules, and pyserial for RTU, are imported only when a driver is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.modbus.plan import RegisterPoint
from drivers.serial.settings import SerialSettings

if TYPE_CHECKING:
    from drivers.base import Buses, Driver


@dataclass(frozen=True, slots=True)
class Slave:
    """What both Modbus drivers read: one unit's points, planned with `max_gap`."""

    device_id: str
    unit_id: int
    points: tuple[RegisterPoint, ...]
    timeout: float
    max_gap: int


@dataclass(frozen=True, slots=True)
class TcpSettings:
    """What a `ModbusTcpDriver` is built from: the slave behind `host:port`."""

    slave: Slave
    host: str
    port: int


def build_tcp(settings: TcpSettings, _buses: Buses | None) -> Driver:
    """A Modbus TCP driver."""
    from drivers.modbus.tcp import ModbusTcpDriver  # noqa: PLC0415 - a driver when one is built

    slave = settings.slave
    return ModbusTcpDriver(
        slave.device_id,
        settings.host,
        settings.port,
        slave.unit_id,
        slave.points,
        timeout=slave.timeout,
        max_gap=slave.max_gap,
    )


@dataclass(frozen=True, slots=True)
class RtuSettings:
    """What a `ModbusRtuDriver` is built from: the slave on the bus of `line`."""

    slave: Slave
    line: SerialSettings


def build_rtu(settings: RtuSettings, buses: Buses | None) -> Driver:
    """A Modbus RTU driver on the shared bus of its port.

    Without `buses` it gets a bus of its own: fine when it is the only user of the port at a
    time, as in a test.
    """
    from drivers.modbus.rtu import ModbusRtuDriver  # noqa: PLC0415 - pyserial, when configured
    from drivers.modbus.rtu_bus import RtuBus  # noqa: PLC0415

    slave, line = settings.slave, settings.line
    bus = RtuBus(line) if buses is None else buses.bus_for(slave.device_id, line)
    return ModbusRtuDriver(
        slave.device_id,
        bus,
        slave.unit_id,
        slave.points,
        timeout=slave.timeout,
        max_gap=slave.max_gap,
    )
