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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from drivers.modbus.rtu_bus import RtuBus
    from drivers.serial.settings import SerialSettings


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


@dataclass(frozen=True, slots=True)
class ReadColumns:
    """One read of every configured point, columnar: the common case costs no object per point.

    At thousands of points a second, a `RawSample` per point was the largest cost of a read.
    Here position i is the point `keys[i]` (configuration order, the same tuple every read):
    `values[i]` is its GOOD value, without flags, error or raw registers, read at `t_wall[i]`
    (`t_mono[i]`); or None, and then its sample is `others[keys[i]]` (a BAD point, or one
    decoded one by one). `samples()` gives the list `Driver.read` would, without the raw
    registers of the columnar points.
    """

    keys: tuple[str, ...]
    values: tuple[float | None, ...]
    t_wall: tuple[float, ...]
    t_mono: tuple[float, ...]
    others: Mapping[str, RawSample]

    def samples(self) -> list[RawSample]:
        """One sample per point, in configuration order."""
        good, others = Quality.GOOD, self.others
        return [
            RawSample(key, value, good, wall, mono) if value is not None else others[key]
            for key, value, wall, mono in zip(
                self.keys, self.values, self.t_wall, self.t_mono, strict=True
            )
        ]

    def other_samples(self) -> list[RawSample]:
        """The samples in `others`, in configuration order."""
        others = self.others
        return [others[key] for key in self.keys if key in others] if others else []


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


@runtime_checkable
class ColumnarDriver(Driver, Protocol):
    """**Protocol**: a driver that can also give one read as columns (`ReadColumns`)."""

    async def read_columns(self) -> ReadColumns:
        """`read`, columnar: the same samples, the common ones without an object each.

        Raises what `read` raises.
        """
        ...


@runtime_checkable
class PushingDriver(Driver, Protocol):
    """**Protocol**: a driver whose device also sends values on its own (an OPC UA subscription).

    The caller takes pushed values as they arrive, between its reads, so a value is not held
    back until the next poll; `read` then leaves out the points pushed since the previous read.
    """

    async def pushed(self) -> list[RawSample]:
        """Wait for values the device sent since they were last handed out; never empty.

        Raises DriverConnectionError when the link is gone, as `read` does.
        """
        ...


class Buses(Protocol):
    """Where a device on a shared serial line finds its bus (the agent's `RtuBuses`)."""

    def bus_for(self, device_id: str, line: SerialSettings) -> RtuBus:
        """Return the bus of the line's port, shared with the other devices on it."""
        ...
