"""What the serial ASCII driver is built from (frozen settings) and how (`build_ascii`).

The agent's runtime builds its drivers from these settings alone: it never imports the site
map's models (`edge_agent.kinds.serial.kind` maps a checked device to them). pyserial is
imported only when a driver is built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.serial.checksum import ChecksumSpec
from drivers.serial.framing import Framing
from drivers.serial.parse import LinePoint
from drivers.serial.settings import SerialSettings

if TYPE_CHECKING:
    from drivers.base import Buses, Driver


@dataclass(frozen=True, slots=True)
class AsciiSettings:
    """What a `SerialAsciiDriver` is built from; `max_age` matters when `request` is None."""

    device_id: str
    line: SerialSettings
    points: tuple[LinePoint, ...]
    request: bytes | None
    framing: Framing
    checksum: ChecksumSpec | None
    timeout: float
    max_age: float


def build_ascii(settings: AsciiSettings, _buses: Buses | None) -> Driver:
    """A serial ASCII driver; it has its port to itself, so `buses` does not matter."""
    from drivers.serial.ascii import SerialAsciiDriver  # noqa: PLC0415 - pyserial

    return SerialAsciiDriver(
        settings.device_id,
        settings.line,
        settings.points,
        request=settings.request,
        framing=settings.framing,
        checksum=settings.checksum,
        timeout=settings.timeout,
        max_age=settings.max_age,
    )
