"""Build a driver for each configured device: the one place config meets drivers.

Each driver module is imported when a device needs it, not with this module: asyncua (OPC UA)
costs about 13 MB of resident memory and pyserial (RTU, serial ASCII) some more, and an agent
keeps what it imported for as long as it runs (G7: 60 MB with Modbus TCP only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from drivers.base import Driver
from drivers.modbus.codec import DataType, Order, Table
from drivers.modbus.plan import RegisterPoint
from drivers.modbus.tcp import ModbusTcpDriver
from drivers.opcua.model import ReadMode, SecurityMode, SecurityPolicy, UaPoint, UaSecurity
from drivers.serial.checksum import Checksum, ChecksumSpec
from drivers.serial.framing import Delimited, FixedLength, Framing
from drivers.serial.parse import LinePoint
from drivers.serial.settings import Parity, SerialSettings
from edge_agent.config import (
    DeviceConfig,
    ModbusRtuDevice,
    ModbusTcpDevice,
    OpcUaDevice,
    SerialDevice,
)
from edge_agent.core.points import NodeSource, PatternSource, ResolvedPoint

if TYPE_CHECKING:
    from drivers.opcua.driver import OpcUaDriver
    from drivers.serial.ascii import SerialAsciiDriver
    from edge_agent.shell.buses import RtuBuses

_LINE_ENCODING = "ascii"  # the config refuses anything else in requests and delimiters


def register_point(point: ResolvedPoint) -> RegisterPoint:
    """The Modbus driver's view of a configured point.

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


def ua_point(point: ResolvedPoint) -> UaPoint:
    """The OPC UA driver's view of a configured point.

    Raises:
        TypeError: the point is not read from an OPC UA node.
    """
    if not isinstance(point.source, NodeSource):
        raise TypeError(f"{point.point} is not an OPC UA point")
    return UaPoint(point.point, point.source.node)


def line_point(point: ResolvedPoint) -> LinePoint:
    """The serial ASCII driver's view of a configured point.

    Raises:
        TypeError: the point is not read by a pattern.
    """
    if not isinstance(point.source, PatternSource):
        raise TypeError(f"{point.point} is not a serial ASCII point")
    return LinePoint(point.point, point.source.pattern)


def serial_settings(device: ModbusRtuDevice | SerialDevice) -> SerialSettings:
    """The port and line settings of a device on a serial port."""
    return SerialSettings(
        port=device.port,
        baudrate=device.baudrate,
        parity=Parity(device.parity),
        stopbits=device.stopbits,
        bytesize=device.bytesize,
    )


def framing_of(device: SerialDevice) -> Framing:
    """How the instrument's frames are cut from the byte stream."""
    if device.length is not None:
        start = b"" if device.start is None else device.start.encode(_LINE_ENCODING)
        return FixedLength(device.length, start)
    return Delimited(device.line_delimiter.encode(_LINE_ENCODING))


def build_driver(
    device: DeviceConfig,
    points: Sequence[ResolvedPoint],
    *,
    buses: RtuBuses | None = None,
) -> Driver:
    """A driver for `device` reading `points`.

    Args:
        device: the device's configuration.
        points: its resolved points, in configuration order.
        buses: where a Modbus RTU device finds the bus of its port, shared with the other
            slaves on it; without it the device gets a bus of its own (fine when it is the
            only user of the port at a time, as in `edge-agent probe`).
    """
    if isinstance(device, ModbusTcpDevice):
        return ModbusTcpDriver(
            device.id,
            device.host,
            device.port,
            device.unit_id,
            [register_point(p) for p in points],
            timeout=device.timeout,
            max_gap=device.max_gap,
        )
    if isinstance(device, ModbusRtuDevice):
        from drivers.modbus.rtu import ModbusRtuDriver  # noqa: PLC0415 - pyserial
        from drivers.modbus.rtu_bus import RtuBus  # noqa: PLC0415

        bus = buses.bus_for(device) if buses is not None else RtuBus(serial_settings(device))
        return ModbusRtuDriver(
            device.id,
            bus,
            device.unit_id,
            [register_point(p) for p in points],
            timeout=device.timeout,
            max_gap=device.max_gap,
        )
    if isinstance(device, OpcUaDevice):
        # The poller reads every `poll`: a subscription's read waits for the next publish.
        return build_opcua_driver(device, points, cycle=device.poll)
    return build_serial_driver(device, points)


def build_opcua_driver(
    device: OpcUaDevice,
    points: Sequence[ResolvedPoint],
    *,
    mode: ReadMode | None = None,
    cycle: float | None = None,
) -> OpcUaDriver:
    """An OPC UA driver for `device`; `mode` overrides the configured one (probe reads).

    `cycle` is how often the caller reads (the poller's `poll`); see `OpcUaDriver`.
    """
    from drivers.opcua.driver import OpcUaDriver  # noqa: PLC0415 - asyncua, only when configured

    security = device.security
    return OpcUaDriver(
        device.id,
        device.endpoint,
        [ua_point(p) for p in points],
        mode=ReadMode(device.mode) if mode is None else mode,
        publishing_interval=device.publishing_interval,
        keepalive=device.keepalive,
        timeout=device.timeout,
        cycle=cycle,
        security=None
        if security is None
        else UaSecurity(
            cert=security.cert,
            key=security.key,
            server_cert=security.server_cert,
            mode=SecurityMode(security.mode),
            policy=SecurityPolicy(security.policy),
        ),
        username=device.username,
        password=device.login_password,
    )


def build_serial_driver(device: SerialDevice, points: Sequence[ResolvedPoint]) -> SerialAsciiDriver:
    """A serial ASCII driver for `device`."""
    from drivers.serial.ascii import SerialAsciiDriver  # noqa: PLC0415 - pyserial

    checksum = (
        None
        if device.checksum == "none"
        else ChecksumSpec(Checksum(device.checksum), device.separator.encode(_LINE_ENCODING))
    )
    return SerialAsciiDriver(
        device.id,
        serial_settings(device),
        [line_point(p) for p in points],
        request=None if device.request is None else device.request.encode(_LINE_ENCODING),
        framing=framing_of(device),
        checksum=checksum,
        timeout=device.timeout,
        max_age=device.max_age,
    )
