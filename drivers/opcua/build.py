"""What the OPC UA driver is built from (frozen settings) and how (`build_ua`).

The agent's runtime builds its drivers from these settings alone: it never imports the site
map's models (`edge_agent.kinds.opcua.kind` maps a checked device to them). asyncua, about
13 MB resident, is imported only when a driver is built (G7).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from drivers.opcua.model import ReadMode, UaPoint, UaSecurity

if TYPE_CHECKING:
    from drivers.base import Buses, Driver


@dataclass(frozen=True, slots=True)
class UaSettings:
    """What an `OpcUaDriver` is built from."""

    device_id: str
    endpoint: str
    points: tuple[UaPoint, ...]
    mode: ReadMode
    publishing_interval: float
    sampling_interval: float
    keepalive: float
    timeout: float
    security: UaSecurity | None
    username: str | None
    password: str | None = dataclasses.field(repr=False)


def build_ua(settings: UaSettings, _buses: Buses | None) -> Driver:
    """An OPC UA driver; asyncua is imported here, only when a device needs it."""
    from drivers.opcua.driver import OpcUaDriver  # noqa: PLC0415 - asyncua, only when configured

    return OpcUaDriver(
        settings.device_id,
        settings.endpoint,
        settings.points,
        mode=settings.mode,
        publishing_interval=settings.publishing_interval,
        sampling_interval=settings.sampling_interval,
        keepalive=settings.keepalive,
        timeout=settings.timeout,
        security=settings.security,
        username=settings.username,
        password=settings.password,
    )
