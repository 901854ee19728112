"""The line settings of a device on a serial port, for the kinds that have one (pure)."""

from __future__ import annotations

from drivers.serial.settings import Parity, SerialSettings
from edge_agent.config.serial_port import OnSerialLine


def serial_line(device: OnSerialLine) -> SerialSettings:
    """The port and line settings of a device on a serial port."""
    return SerialSettings(
        port=device.port,
        baudrate=device.baudrate,
        parity=Parity(device.parity),
        stopbits=device.stopbits,
        bytesize=device.bytesize,
    )
