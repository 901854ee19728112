"""Pure serial line settings shared by Modbus RTU buses and ASCII instruments."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["BAUDRATES", "Parity", "SerialSettings"]

# The rates RS-232/485 instruments use; anything else is almost surely a typo in a site map.
BAUDRATES = (1200, 2400, 4800, 9600, 14400, 19200, 28800, 38400, 57600, 115200, 230400)


class Parity(enum.StrEnum):
    """Parity of each character; the values are the site-map spelling."""

    NONE = "N"
    EVEN = "E"
    ODD = "O"


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """Where a serial device is and how its characters are framed on the line.

    `port` is a device path (``/dev/ttyUSB0``, ``/dev/ttyS1``, a pseudo terminal).

    Raises:
        ValueError: (on construction) an empty port, a baud rate not in `BAUDRATES`, or a
            character size or stop-bit count a UART cannot do.
    """

    port: str
    baudrate: int = 9600
    parity: Parity = Parity.NONE
    stopbits: int = 1
    bytesize: int = 8

    def __post_init__(self) -> None:
        if not self.port:
            raise ValueError("a serial port path is required")
        if self.baudrate not in BAUDRATES:
            raise ValueError(f"baudrate {self.baudrate} is not one of {BAUDRATES}")
        if self.stopbits not in {1, 2}:
            raise ValueError(f"stopbits must be 1 or 2, not {self.stopbits}")
        if self.bytesize not in {7, 8}:
            raise ValueError(f"bytesize must be 7 or 8, not {self.bytesize}")
        # A plain string from a config loader becomes the enum, so comparisons stay exact.
        object.__setattr__(self, "parity", Parity(self.parity))

    @property
    def bits_per_char(self) -> int:
        """Return the bits one character takes on the line: start, data, parity, stop."""
        return 1 + self.bytesize + (self.parity is not Parity.NONE) + self.stopbits

    @property
    def char_seconds(self) -> float:
        """Return the time one character takes on the line."""
        return self.bits_per_char / self.baudrate
