"""The `serial` kind: an ASCII instrument on a serial port.

Its device model is in `config`; the mapping to the driver's settings and how it builds and
shows in `kind`.
"""

from edge_agent.kinds.serial.config import SerialDevice
from edge_agent.kinds.serial.kind import SERIAL

__all__ = ["SERIAL", "SerialDevice"]
