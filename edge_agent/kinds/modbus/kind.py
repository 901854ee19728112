"""The Modbus kinds: `modbus_tcp` and `modbus_rtu` (slaves on a shared RS-485 bus).

Both read registers and coils, planned into as few requests as `max_gap` allows; `check`
shows where in the tables each point is, `probe` the registers in hex.
"""

from __future__ import annotations

from collections.abc import Sequence

from drivers.base import RawSample
from drivers.modbus.build import RtuSettings, Slave, TcpSettings, build_rtu, build_tcp
from drivers.modbus.codec import DataType, Order, Table
from drivers.modbus.plan import RegisterPoint, plan_reads
from edge_agent.core.points import ResolvedPoint
from edge_agent.kinds.descriptor import DriverKind, PointView
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


def _slave(device: ModbusTcpDevice | ModbusRtuDevice, points: Sequence[ResolvedPoint]) -> Slave:
    return Slave(
        device_id=device.id,
        unit_id=device.unit_id,
        points=tuple(register_point(p) for p in points),
        timeout=device.timeout,
        max_gap=device.max_gap,
    )


def tcp_settings(device: ModbusTcpDevice, points: Sequence[ResolvedPoint]) -> TcpSettings:
    """The Modbus TCP driver's settings for `device` reading `points` (pure)."""
    return TcpSettings(_slave(device, points), host=device.host, port=device.port)


def rtu_settings(device: ModbusRtuDevice, points: Sequence[ResolvedPoint]) -> RtuSettings:
    """The Modbus RTU driver's settings for `device` reading `points` (pure)."""
    return RtuSettings(_slave(device, points), line=serial_line(device))


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
