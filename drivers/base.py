"""What every driver gives the agent: samples, typed errors and one protocol.

Error tree::

    DriverError
    ├── DriverConnectionError   the link to the device is down or refused
    ├── DriverTimeoutError      the device did not answer in time
    ├── DriverProtocolError     the device answered with an exception or a malformed frame
    └── DecodeError             the bytes do not decode to the configured type
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


class Quality(enum.StrEnum):
    """How far a value can be trusted; the wire and the API use these names."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


class DriverError(Exception):
    """Base of every error a driver raises."""


class DriverConnectionError(DriverError):
    """The link to the device is down or was refused."""


class DriverTimeoutError(DriverError):
    """The device did not answer in time."""


class DriverProtocolError(DriverError):
    """The device answered with an exception code or a malformed frame."""


class DecodeError(DriverError):
    """Raw registers or bytes do not decode to the configured type."""


@dataclass(frozen=True, slots=True)
class RawSample:
    """One value read from a device, before scale, offset and unit handling.

    `t_wall` is the wall clock (Unix seconds) when the value was taken; `t_mono` the
    monotonic clock at the same instant. `raw` keeps the registers or bytes as read so a
    technician (and an auditor) can see what the instrument really sent.
    """

    key: str
    value: float | None
    quality: Quality
    t_wall: float
    t_mono: float
    raw: tuple[int, ...] = ()
    error: str | None = None
    flags: tuple[str, ...] = field(default=())


class Driver(Protocol):
    """**Protocol**: a connection to one device that reads all its configured points."""

    @property
    def device_id(self) -> str:
        """The device's id from the site map."""
        ...

    async def connect(self) -> None:
        """Open the link; raise DriverConnectionError when the device cannot be reached."""
        ...

    async def read(self) -> list[RawSample]:
        """Read every configured point once; a failed point is a BAD sample, not an exception.

        Raises DriverConnectionError when the link itself is gone, so the caller reconnects.
        """
        ...

    async def close(self) -> None:
        """Close the link; safe to call twice."""
        ...
