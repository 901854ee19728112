"""The Modbus device models: `modbus_tcp`, and `modbus_rtu` (a slave on an RS-485 bus)."""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

from collections.abc import Iterator, Sequence
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field, field_validator

from configkit.durations import format_duration
from configkit.issues import KeyPath
from drivers.modbus.codec import MAX_UNIT_ID, DataType, Table, is_bit_table
from drivers.modbus.plan import MAX_READ_REGISTERS, RegisterPoint, plan_reads
from drivers.modbus.timing import rtu_wire_bytes
from edge_agent.config.device_base import DeviceBase, Parity, Seconds, StopBits
from edge_agent.config.fields import Baudrate, DevicePath, Host
from edge_agent.config.point_source import SourceKey
from edge_agent.config.points import PointConfig
from edge_agent.config.serial_port import SerialPortUse
from edge_agent.kinds.line import serial_line

MODBUS_SERIAL_PARITY: Parity = "E"
"""The Modbus over Serial Line spec's default parity (8E1); by the spec 8N1 needs two stop
bits, though many instruments ship set to 8N1 with one."""

# A field whose text names a driver's bound (max_gap here, modbus_rtu's unit_id) gives it as
# `description`, which pydantic keeps over a docstring: a docstring is a literal, so the
# reference (`make docs`) would not follow the constant the field checks.
MaxGap = Annotated[
    int,
    Field(
        strict=True,
        ge=0,
        le=MAX_READ_REGISTERS,
        description="Unused registers one read may span to merge neighbouring points (a read "
        f"holds at most {MAX_READ_REGISTERS}).",
    ),
]


class ModbusTcpDevice(DeviceBase):
    """An instrument or PLC reached over Modbus TCP, polled every `poll` seconds."""

    point_source: ClassVar[SourceKey] = "address"

    driver: Literal["modbus_tcp"]
    """Which driver reads the device: `modbus_tcp`."""
    host: Host
    """The device's IP address or host name."""
    port: Annotated[int, Field(strict=True, ge=1, le=65535)] = 502
    """Its Modbus TCP port."""
    # The slave addresses, not the 0..255 the TCP header allows: codec.MAX_UNIT_ID says why.
    unit_id: Annotated[int, Field(strict=True, ge=0, le=MAX_UNIT_ID)] = 1
    """The unit identifier in each request (a gateway in front of serial slaves routes by it)."""
    poll: Seconds
    """How often every point of the device is read."""
    timeout: Seconds = 1.0
    """How long one request may take before the read counts as failed."""
    max_gap: MaxGap = 8


def _slave_address(unit_id: int) -> int:
    if unit_id == 0:
        raise ValueError(
            f"unit_id 0 is the broadcast address, which no slave answers; use 1..{MAX_UNIT_ID}"
        )
    if not 1 <= unit_id <= MAX_UNIT_ID:
        raise ValueError(f"unit_id {unit_id} is outside the slave addresses 1..{MAX_UNIT_ID}")
    return unit_id


class ModbusRtuDevice(DeviceBase):
    """One slave on an RS-485 Modbus RTU bus.

    Every device with the same `port` is a slave on one bus: they share one serial port and
    one transaction at a time, so they must agree on `baudrate`, `parity`, `stopbits` and
    `bytesize`, and each needs its own `unit_id`. `parity` defaults to E (even), the Modbus
    serial-line default; many instruments ship set to N, so check the instrument's manual.
    `timeout` is per request: a silent slave costs the bus at most one timeout per poll cycle.
    """

    point_source: ClassVar[SourceKey] = "address"
    serial_port: ClassVar[SerialPortUse | None] = SerialPortUse(shared=True)

    driver: Literal["modbus_rtu"]
    """Which driver reads the device: `modbus_rtu`."""
    port: DevicePath
    """The serial device path of the RS-485 bus, e.g. /dev/ttyUSB0; devices on one port share the
    bus, whatever path names it (a /dev/serial/by-id link to /dev/ttyUSB0 is that port).
    """
    baudrate: Baudrate = 9600
    """Line speed in bits per second; the same for every slave on the port."""
    parity: Parity = MODBUS_SERIAL_PARITY
    """N, E (the Modbus default) or O; the same for every slave on the port."""
    stopbits: StopBits = 1
    """1 or 2; the same for every slave on the port."""
    bytesize: Literal[8] = 8
    """Data bits: Modbus RTU uses 8."""
    unit_id: Annotated[
        int,
        Field(
            strict=True,
            description=f"The slave address, 1 to {MAX_UNIT_ID}, unique on the port.",
        ),
        AfterValidator(_slave_address),
    ]
    poll: Seconds
    """How often every point of the device is read."""
    timeout: Seconds = 1.0
    """How long one request may wait for the slave's answer; a silent slave costs the bus this
    once per cycle. It must exceed the time the longest read takes on the wire at `baudrate`.
    """
    max_gap: MaxGap = 8

    def points_problems(self, points: Sequence[PointConfig]) -> Iterator[tuple[KeyPath, str]]:
        """A `timeout` shorter than the longest planned read takes on the wire.

        The slave's whole answer could never arrive in time, so every such read would time out.
        """
        registers = []
        for number, point in enumerate(points):
            address = point.address
            if address is None:
                continue  # named at the point (point_source)
            registers.append(
                RegisterPoint(
                    f"{number}", Table(address.table), address.start, DataType(address.type)
                )
            )
        line = serial_line(self)
        reads = plan_reads(registers, max_gap=self.max_gap)
        longest = max(reads, key=rtu_wire_bytes, default=None)
        if longest is None:
            return
        wire = rtu_wire_bytes(longest) * line.char_seconds
        if self.timeout < wire:
            unit = "bits" if is_bit_table(longest.table) else "registers"
            message = (
                f"timeout {format_duration(self.timeout)} is shorter than the longest read of "
                f"this slave takes on the wire at {self.baudrate} {self.bytesize}{self.parity}"
                f"{self.stopbits}: {longest.count} {unit} from {longest.table} {longest.start}, "
                f"{rtu_wire_bytes(longest)} bytes, {wire * 1000:.0f} ms; every such read would "
                f"time out: give a timeout of at least {wire * 1000:.0f} ms and the slave's own "
                "answer time, or a smaller max_gap"
            )
            yield ("timeout",), message

    @field_validator("bytesize", mode="before")
    @classmethod
    def _eight_bits(cls, bytesize: object) -> object:
        if bytesize != 8:  # noqa: PLR2004 - the one size RTU has
            raise ValueError(f"Modbus RTU sends 8-bit bytes: bytesize must be 8, got {bytesize!r}")
        return bytesize
