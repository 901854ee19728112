"""The mapping from one OPC UA DataValue to a sample, shared by subscriptions and Reads.

Nothing here opens a socket. `to_sample` turns one OPC UA DataValue, already reduced to plain
Python (`UaValue`), into a `RawSample`; the driver calls it for subscription notifications and
for Read results alike, so both modes follow one rule set:

* **Quality** comes from the StatusCode's severity bits: Good -> GOOD, Uncertain -> UNCERTAIN,
  Bad -> BAD with the value dropped (OPC UA Part 4 7.39: a Bad value is not to be used).
  Every status other than plain ``Good`` is named in `flags` (``"UncertainLastUsableValue"``)
  and, for UNCERTAIN and BAD, also in `error` (``"BadSensorFailure: <doc>"``).
* **Time**: `t_wall` is the SourceTimestamp; without one the ServerTimestamp (flag
  ``server_time``); without either the local clock at the read (flag ``local_time``). A
  timestamp more than a day behind our clock or 15 min ahead is no reading time (flag
  ``device_time_rejected``): the next one in that order stands in.
* **Repeats**: when a point's DataValue is the same observation the previous read returned
  (same value, status and timestamps), the sample is flagged ``held`` and stamped with the
  time of this read instead, so the agent never stores two readings of one point with one
  time stamp and a stuck source stays visible. A DataValue without timestamps cannot be told
  apart from a repeat, so it is never ``held``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from asyncua.ua import status_codes

from drivers.base import Quality, RawSample
from drivers.opcua.model import UaValue

__all__ = [
    "FLAG_HELD",
    "FLAG_LOCAL_TIME",
    "FLAG_SERVER_TIME",
    "FLAG_TIME_REJECTED",
    "epoch_seconds",
    "quality_of",
    "status_name",
    "to_sample",
]

FLAG_HELD = "held"
FLAG_SERVER_TIME = "server_time"
FLAG_LOCAL_TIME = "local_time"

# StatusCode layout (Part 4 7.39.1): bits 31..30 severity, 29..16 sub-code, 15..0 info bits.
_SEVERITY_SHIFT = 30
_SEVERITY_UNCERTAIN = 1
_CODE_MASK = 0xFFFF0000


def epoch_seconds(moment: datetime | None) -> float | None:
    """Return a DataValue timestamp as Unix seconds; None when absent or the null DateTime.

    OPC UA's null DateTime is 1601-01-01; anything not after the Unix epoch is treated as
    "no timestamp" rather than a reading from the past.
    """
    if moment is None:
        return None
    if moment.tzinfo is None:  # asyncua hands out UTC; older builds leave it naive
        moment = moment.replace(tzinfo=UTC)
    seconds = moment.timestamp()
    return seconds if seconds > 0 else None


def quality_of(status: int) -> Quality:
    """Map a StatusCode to a quality by its severity bits (Part 4 7.39.1)."""
    severity = (status & 0xFFFFFFFF) >> _SEVERITY_SHIFT
    if severity == 0:
        return Quality.GOOD
    if severity == _SEVERITY_UNCERTAIN:
        return Quality.UNCERTAIN
    return Quality.BAD  # 2 is Bad; 3 is reserved and must not be trusted either


def status_name(status: int) -> str:
    """Return the symbolic name of a StatusCode, ignoring its info bits; hex when unknown."""
    code = status & _CODE_MASK
    if code == 0:
        return "Good"
    name, doc = status_codes.get_name_and_doc(code)
    # asyncua answers an unknown code with ("Good", "Unknown StatusCode value: ...").
    if doc.startswith("Unknown StatusCode"):
        return f"0x{code:08X}"
    return name


def _status_doc(status: int) -> str:
    """Return the spec's one-line description of a StatusCode."""
    _, doc = status_codes.get_name_and_doc(status & _CODE_MASK)
    return doc


def _number(value: object) -> float | None:
    """Return a scalar numeric value as float; None for anything else."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)  # NaN and inf pass through: normalize flags them not_finite
    return None


# A device clock further off than this is wrong, not early or late data: PLCs send
# 9999-12-31 (DateTime max) or 1601-01-01, and a dead RTC battery sends 2000-01-01.
MAX_CLOCK_SKEW = 86_400.0
# Ahead of our clock, less: a value is not read before it is taken. Past this a device clock
# kept on local time and sent as UTC (Beijing time: 8 h ahead) would date every reading hours
# into the future; 15 min is less than any time zone's offset and more than an unsynced
# real-time clock drifts in a year.
MAX_CLOCK_AHEAD = 900.0
FLAG_TIME_REJECTED = "device_time_rejected"


def _believable(moment: float | None, wall: float) -> float | None:
    """`moment` if it is at most a day behind our wall clock and 15 min ahead, else None."""
    if moment is None or not -MAX_CLOCK_SKEW <= moment - wall <= MAX_CLOCK_AHEAD:
        return None
    return moment


def to_sample(
    key: str,
    value: UaValue,
    *,
    wall: float,
    mono: float,
    previous: UaValue | None = None,
) -> RawSample:
    """Turn one DataValue into a sample (see the module docstring for the rules).

    Args:
        key: the point's key.
        value: the DataValue, reduced.
        wall: the local wall clock at this read (Unix seconds).
        mono: the local monotonic clock at this read.
        previous: the DataValue this point's previous sample came from, if any.
    """
    quality = quality_of(value.status)
    flags: list[str] = []
    name = status_name(value.status)
    if value.status & _CODE_MASK:
        flags.append(name)
    error: str | None = None
    if quality is not Quality.GOOD:
        error = f"{name}: {_status_doc(value.status)}"

    source_time = _believable(value.source_time, wall)
    server_time = _believable(value.server_time, wall)
    if (value.source_time, value.server_time) != (source_time, server_time):
        flags.append(FLAG_TIME_REJECTED)
    has_time = source_time is not None or server_time is not None
    if has_time and value == previous:
        t_wall = wall
        flags.append(FLAG_HELD)
    elif source_time is not None:
        t_wall = source_time
    elif server_time is not None:
        t_wall = server_time
        flags.append(FLAG_SERVER_TIME)
    else:
        t_wall = wall
        flags.append(FLAG_LOCAL_TIME)

    number: float | None = None
    if quality is not Quality.BAD:
        number = _number(value.value)
        if number is None:
            kind = "null" if value.value is None else type(value.value).__name__
            quality = Quality.BAD
            error = f"not_numeric: {kind} value with status {name}"
    return RawSample(
        key, number, quality, t_wall, mono, error=error, flags=tuple(dict.fromkeys(flags))
    )
