"""The `serial` kind: an RS-232/485 instrument that speaks ASCII lines.

The driver (and pyserial) is imported only when one is built (G7). `probe` shows the frame
as text, control characters escaped; a free-running instrument is listened to until every
point has a value or `max_age` passes (nothing was asked, so no round trip).
"""

from __future__ import annotations

from collections.abc import Sequence

from drivers.base import RawSample
from drivers.serial.build import AsciiSettings, build_ascii
from drivers.serial.checksum import Checksum, ChecksumSpec
from drivers.serial.framing import Delimited, FixedLength, Framing
from drivers.serial.parse import LinePoint
from edge_agent.core.points import PatternSource, ResolvedPoint
from edge_agent.kinds.descriptor import DriverKind, PointView
from edge_agent.kinds.line import serial_line
from edge_agent.kinds.serial.config import SerialDevice

_LINE_ENCODING = "ascii"  # the config refuses anything else in requests and delimiters


def line_point(point: ResolvedPoint) -> LinePoint:
    """The serial ASCII driver's view of a configured point.

    Raises:
        TypeError: the point is not read by a pattern.
    """
    return LinePoint(point.point, _pattern(point))


def _pattern(point: ResolvedPoint) -> str:
    return point.source_as(PatternSource, "a serial ASCII").pattern


def framing_of(device: SerialDevice) -> Framing:
    """How the instrument's frames are cut from the byte stream."""
    if device.length is not None:
        start = b"" if device.start is None else device.start.encode(_LINE_ENCODING)
        return FixedLength(device.length, start)
    return Delimited(device.line_delimiter.encode(_LINE_ENCODING))


def _frame_text(sample: RawSample) -> str:
    # repr shows CR, LF, NUL and noise bytes as escapes; [2:-1] drops the b'' around it.
    return repr(bytes(sample.raw))[2:-1] or "-"


PATTERNS = PointView(
    columns=("pattern",),
    cells=lambda point: (_pattern(point),),
    as_json=lambda point: {"pattern": _pattern(point)},
    raw_text=_frame_text,
)
"""Serial ASCII points: their pattern; raw is the frame as text."""


def ascii_settings(device: SerialDevice, points: Sequence[ResolvedPoint]) -> AsciiSettings:
    """The serial ASCII driver's settings for `device` reading `points` (pure)."""
    checksum = (
        None
        if device.checksum == "none"
        else ChecksumSpec(Checksum(device.checksum), device.separator.encode(_LINE_ENCODING))
    )
    return AsciiSettings(
        device_id=device.id,
        line=serial_line(device),
        points=tuple(line_point(p) for p in points),
        request=None if device.request is None else device.request.encode(_LINE_ENCODING),
        framing=framing_of(device),
        checksum=checksum,
        timeout=device.timeout,
        max_age=device.max_age,
    )


SERIAL = DriverKind(
    config=SerialDevice,
    settings=ascii_settings,
    build=build_ascii,
    view=PATTERNS,
    requests=lambda settings: None if settings.request is None else 1,
    listen=lambda settings: settings.max_age if settings.request is None else None,
)
"""`serial`: an ASCII instrument, asked with `request` or free-running."""
