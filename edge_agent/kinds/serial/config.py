"""The serial ASCII device model (`serial`): an RS-232/485 instrument that speaks lines."""

# No `from __future__ import annotations`: pydantic reads these annotations at runtime.

import re
from typing import Annotated, ClassVar, Literal, Self

from pydantic import AfterValidator, Field, model_validator

from configkit.issues import KeyPath
from configkit.validation import raise_at
from edge_agent.config.device_base import DeviceBase, Parity, Seconds, StopBits
from edge_agent.config.fields import Baudrate, DevicePath
from edge_agent.config.point_source import SourceKey
from edge_agent.config.serial_port import SerialPortUse

# The escapes of a double-quoted YAML string that name a control character or a code.
_ESCAPE = re.compile(r"\\[0abtnvfreNLP_]|\\x[0-9A-Fa-f]{2}|\\u[0-9A-Fa-f]{4}|\\U[0-9A-Fa-f]{8}")


def _line_text(value: str) -> str:
    """Check a request, delimiter or marker: non-empty ASCII, escapes really escaped."""
    if not value:
        raise ValueError("must not be empty")
    if not value.isascii():
        raise ValueError(f"{value!r} must be ASCII text")
    if _ESCAPE.search(value):
        # Single quotes in YAML keep `\r` or `\x02` (STX) as text; the instrument wants CR, STX.
        raise ValueError(
            f"{value!r} holds a backslash escape: write it in double quotes, as in "
            '"RD\\r\\n", so that YAML turns \\r, \\n, \\t, \\x02 and the like into those '
            "characters"
        )
    return value


LineText = Annotated[str, AfterValidator(_line_text)]

# drivers.serial.checksum.Checksum's values and `none` (tests/unit/test_literal_mirrors.py).
Checksum = Literal["none", "xor", "lrc", "crc16_modbus"]

MAX_FRAME = 256
"""Longest frame (line) an ASCII instrument may send; longer ones are noise."""


class SerialDevice(DeviceBase):
    r"""An RS-232/485 instrument that speaks ASCII lines.

    With `request` (such as ``"RD\r\n"``) the agent asks every `poll` and parses the answer
    that arrives within `timeout` (the request's own echo on a two-wire RS-485 line is no
    answer); without it the instrument is free-running and each `poll`
    takes the newest line that is younger than `max_age`. Frames end with `delimiter`
    (default CR LF) or are `length` bytes long (optionally starting with `start`). With a
    `checksum` each frame ends with `separator` and the check value in hex. Each point finds
    its value in the frame with `pattern`.
    """

    point_source: ClassVar[SourceKey] = "pattern"
    serial_port: ClassVar[SerialPortUse | None] = SerialPortUse(
        shared=False, named="a serial ASCII instrument"
    )

    driver: Literal["serial"]
    """Which driver reads the device: `serial` (ASCII lines)."""
    port: DevicePath
    """The serial device path, e.g. /dev/ttyS1; an ASCII instrument needs its port to itself (by
    any path to it)."""
    baudrate: Baudrate = 9600
    """Line speed in bits per second."""
    parity: Parity = "N"
    """N (default), E or O."""
    stopbits: StopBits = 1
    """1 or 2."""
    bytesize: Literal[7, 8] = 8
    """Data bits, 7 or 8."""
    request: LineText | None = None
    r"""What to send every `poll`; escapes such as `\r\n` or `\x02` (STX) in double quotes
    (`"\x02RD\x03"`); absent: the instrument is free-running.
    """
    delimiter: LineText | None = None
    """What ends a frame (default CR LF); or give `length`."""
    length: Annotated[int, Field(strict=True, ge=1, le=MAX_FRAME)] | None = None
    """Frames of this many bytes instead of delimited lines."""
    start: LineText | None = None
    """What a fixed-`length` frame starts with, to find frame boundaries."""
    checksum: Checksum = "none"
    """The check at the end of each frame: none, xor, lrc or crc16_modbus, in hex after
    `separator`.
    """
    separator: LineText = "*"
    """What separates a frame's text from its checksum."""
    poll: Seconds
    """How often the instrument is asked (with `request`) or its newest line taken."""
    timeout: Seconds = 1.0
    """How long to wait for the answer to `request`."""
    max_age: Seconds = 10.0
    """A free-running instrument's newest line older than this is stale (quality bad)."""

    @property
    def free_running(self) -> bool:
        """Whether the instrument sends on its own (no request)."""
        return self.request is None

    @property
    def line_delimiter(self) -> str:
        """The delimiter of delimiter framing (CR LF unless set)."""
        return "\r\n" if self.delimiter is None else self.delimiter

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        given = self.model_fields_set
        problems: list[tuple[KeyPath, str]] = []
        if self.length is not None and self.delimiter is not None:
            problems.append((("length",), "frames end with a delimiter or have a length, not both"))
        if self.start is not None and self.length is None:
            problems.append((("start",), "start applies only with length (fixed-length frames)"))
        if self.start is not None and self.length is not None and len(self.start) > self.length:
            problems.append((("start",), f"start is longer than the frame ({self.length})"))
        if "separator" in given and self.checksum == "none":
            problems.append((("separator",), "separator applies only with a checksum"))
        if "max_age" in given and self.request is not None:
            problems.append(
                (("max_age",), "max_age applies only to free-running instruments (no request)")
            )
        if problems:
            raise_at(problems)
        return self
