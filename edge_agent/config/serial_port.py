"""How a device model uses a serial port, for the rules that span the devices of one port.

A device model on a serial port says how it uses the port (`DeviceBase.serial_port`): as one
slave of an RS-485 bus that other devices share (they must agree on the line settings and
each needs its own `unit_id`), or alone. `SiteConfig` checks the devices of each port by
these, so a new kind on a serial port names its use in its own model and adds nothing there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

LINE_SETTINGS = ("baudrate", "parity", "stopbits", "bytesize")
"""What every device on one port must agree on."""

SERIAL_WIRE = "serial_wire"
"""Validation-context key: a function from a `port` path to the port it is (the loader passes
`os.path.realpath`), so a /dev/serial/by-id link and its /dev/ttyUSB0 are one port, as the
agent opens them; without it a port is its path."""


@dataclass(frozen=True, slots=True)
class SerialPortUse:
    """How the devices of a model use their serial `port`."""

    shared: bool
    """True: a slave of an RS-485 bus other slaves share; False: it needs the port to itself."""
    named: str = "a device"
    """How an error names a device that needs its port to itself."""


@runtime_checkable
class OnSerialLine(Protocol):
    """A device with a serial port and its line settings (`modbus_rtu`, `serial`)."""

    # Properties, not attributes: the config models are frozen, so their fields are read-only.
    @property
    def id(self) -> str:
        """The device's name in the site map."""

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


@runtime_checkable
class OnSerialBus(OnSerialLine, Protocol):
    """A slave on a shared bus: its address tells it apart from the other slaves."""

    @property
    def unit_id(self) -> int:
        """The slave address, unique on the port."""
