"""Build a driver for each configured device: the one place config meets drivers."""

from __future__ import annotations

from collections.abc import Sequence

from drivers.base import Driver
from drivers.modbus.codec import DataType, Order, Table
from drivers.modbus.plan import RegisterPoint
from drivers.modbus.tcp import ModbusTcpDriver
from edge_agent.config import DeviceConfig
from edge_agent.core.points import ResolvedPoint


def register_point(point: ResolvedPoint) -> RegisterPoint:
    """The driver's view of a configured point."""
    return RegisterPoint(
        key=point.point,
        table=Table(point.table),
        start=point.start,
        dtype=DataType(point.dtype),
        byte_order=Order(point.byte_order),
        word_order=Order(point.word_order),
        bit=point.bit,
    )


def build_driver(device: DeviceConfig, points: Sequence[ResolvedPoint]) -> Driver:
    """A driver for `device` reading `points` (only Modbus TCP in this version)."""
    return ModbusTcpDriver(
        device.id,
        device.host,
        device.port,
        device.unit_id,
        [register_point(p) for p in points],
        timeout=device.timeout,
        max_gap=device.max_gap,
    )
