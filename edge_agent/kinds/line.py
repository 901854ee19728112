"""The line settings of a device on a serial port, for the kinds that have one (pure)."""

from __future__ import annotations

from typing import Protocol

from drivers.serial.settings import Parity, SerialSettings


class OnSerialLine(Protocol):
    """A device model with a serial port and its line settings (`modbus_rtu`, `serial`)."""

    # Properties, not attributes: the config models are frozen, so their fields are read-only.
    @property
    def port(self) -> str:
        """The serial device path."""

    @property
    def baudrate(self) -> int:
        """Line speed in bits per second."""

    @property
    def parity(self) -> str:
        """N, E or O."""

    @property
    def stopbits(self) -> int:
        """1 or 2."""

    @property
    def bytesize(self) -> int:
        """Data bits, 7 or 8."""


def serial_line(device: OnSerialLine) -> SerialSettings:
    """The port and line settings of a device on a serial port."""
    return SerialSettings(
        port=device.port,
        baudrate=device.baudrate,
        parity=Parity(device.parity),
        stopbits=device.stopbits,
        bytesize=device.bytesize,
    )
