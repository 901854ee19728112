"""The serial port's own behaviour on a pseudo terminal."""

from __future__ import annotations

import os
import select

from drivers.base import DriverConnectionError
from drivers.serial.port import SerialPort
from drivers.serial.settings import SerialSettings


async def test_take_arrived_hands_on_what_the_loop_has_not_read_yet() -> None:
    master, slave = os.openpty()
    got: list[bytes] = []
    lost: list[DriverConnectionError] = []
    port = SerialPort.open(
        SerialSettings(os.ttyname(slave), 9600), lambda chunk, _t: got.append(chunk), lost.append
    )
    try:
        port.take_arrived()  # nothing has arrived: nothing handed on, and no hangup either
        assert (got, lost, port.is_open) == ([], [], True)
        os.write(master, b"\x01\x03")
        assert select.select([slave], [], [], 5)[0], "the bytes never reached the tty"
        port.take_arrived()  # the loop has not run since
        assert (got, lost) == ([b"\x01\x03"], [])
    finally:
        port.close()
        os.close(master)
        os.close(slave)
