"""The Modbus kinds: `modbus_tcp` and `modbus_rtu` (slaves on a shared RS-485 bus).

Both read registers and coils, planned into as few requests as `max_gap` allows; `check`
shows where in the tables each point is, `probe` the registers in hex.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from drivers.base import Driver, RawSample
from drivers.modbus.codec import DataType, Order, Table
from drivers.modbus.plan import RegisterPoint, plan_reads
from drivers.serial.settings import SerialSettings
from edge_agent.core.points import ResolvedPoint
from edge_agent.kinds.descriptor import Buses, DriverKind, PointView
from edge_agent.kinds.line import serial_line
from edge_agent.kinds.modbus.config import ModbusRtuDevice, ModbusTcpDevice


def register_point(point: ResolvedPoint) -> RegisterPoint:
    """The Modbus drivers' view of a configured point.

    Raises:
        TypeError: the point is not read from Modbus registers.
    """
    source = point.register
    return RegisterPoint(
        key=point.point,
        table=Table(source.table),
        start=source.start,
        dtype=DataType(source.dtype),
        byte_order=Order(source.byte_order),
        word_order=Order(source.word_order),
        bit=source.bit,
    )


def _register_cells(point: ResolvedPoint) -> tuple[str, ...]:
    source = point.register
    start = str(source.start) if source.bit is None else f"{source.start}.{source.bit}"
    # Byte and word order mean nothing for a single bit.
    order = "-" if source.dtype == "bool" else f"{source.byte_order}/{source.word_order}"
    return (source.table, start, source.dtype, order)


def _register_json(point: ResolvedPoint) -> dict[str, object]:
    source = point.register
    return {
        "table": source.table,
        "start": source.start,
        "bit": source.bit,
        "type": source.dtype,
        "byte_order": source.byte_order,
        "word_order": source.word_order,
    }


def _hex_words(sample: RawSample) -> str:
    return " ".join(f"{word:04X}" for word in sample.raw) or "-"


REGISTERS = PointView(
    columns=("table", "start", "type", "order"),
    cells=_register_cells,
    as_json=_register_json,
    raw_text=_hex_words,
)
"""Modbus points: their table, start (and bit), type and byte/word order; raw words in hex."""


@dataclass(frozen=True, slots=True)
class Slave:
    """What both Modbus drivers read: one unit's points, planned with `max_gap`."""

    device_id: str
    unit_id: int
    points: tuple[RegisterPoint, ...]
    timeout: float
    max_gap: int


def _slave(device: ModbusTcpDevice | ModbusRtuDevice, points: Sequence[ResolvedPoint]) -> Slave:
    return Slave(
        device_id=device.id,
        unit_id=device.unit_id,
        points=tuple(register_point(p) for p in points),
        timeout=device.timeout,
        max_gap=device.max_gap,
    )


@dataclass(frozen=True, slots=True)
class TcpSettings:
    """What a `ModbusTcpDriver` is built from: the slave behind `host:port`."""

    slave: Slave
    host: str
    port: int


def tcp_settings(device: ModbusTcpDevice, points: Sequence[ResolvedPoint]) -> TcpSettings:
    """The Modbus TCP driver's settings for `device` reading `points` (pure)."""
    return TcpSettings(_slave(device, points), host=device.host, port=device.port)


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


def rtu_settings(device: ModbusRtuDevice, points: Sequence[ResolvedPoint]) -> RtuSettings:
    """The Modbus RTU driver's settings for `device` reading `points` (pure)."""
    return RtuSettings(_slave(device, points), line=serial_line(device))


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


def _planned_requests(settings: TcpSettings | RtuSettings) -> int | None:
    slave = settings.slave
    return max(1, len(plan_reads(slave.points, max_gap=slave.max_gap)))


MODBUS_TCP = DriverKind(
    config=ModbusTcpDevice,
    settings=tcp_settings,
    build=build_tcp,
    view=REGISTERS,
    requests=_planned_requests,
)
"""`modbus_tcp`: an instrument or PLC over Modbus TCP."""

MODBUS_RTU = DriverKind(
    config=ModbusRtuDevice,
    settings=rtu_settings,
    build=build_rtu,
    view=REGISTERS,
    requests=_planned_requests,
)
"""`modbus_rtu`: one slave on an RS-485 bus shared with the other devices of its port."""
