"""The flat list of points a gateway reads: templates expanded, units and limits resolved.

Pure: a checked `SiteConfig` in, `ResolvedPoint`s out. The poll loops, normalization, alarm
evaluation and `edge-agent check` all work from this list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_agent.config import REGISTER_COUNT

if TYPE_CHECKING:
    from edge_agent.config import DataType, Order, PointConfig, SiteConfig, Table
    from specs.catalogue import Indicator


@dataclass(frozen=True, slots=True)
class Limits:
    """Alarm thresholds in the indicator's canonical unit; None where not set."""

    low_low: float | None = None
    low: float | None = None
    high: float | None = None
    high_high: float | None = None


@dataclass(frozen=True, slots=True)
class ResolvedPoint:
    """One point ready to poll: where to read it and how to turn raw into canonical values.

    `value = raw * scale + offset` is in `unit` (what the instrument reports); the catalogue
    converts it to `canonical_unit`. `thresholds` and `deadband` are already canonical.
    """

    device_id: str
    point: str
    quota: str
    indicator_name: str
    table: Table
    start: int
    dtype: DataType
    byte_order: Order
    word_order: Order
    bit: int | None
    scale: float
    offset: float
    unit: str
    canonical_unit: str
    thresholds: Limits
    deadband: float

    @property
    def register_count(self) -> int:
        """Return how many registers (or coils) the value occupies."""
        return REGISTER_COUNT[self.dtype]


def resolve_points(config: SiteConfig) -> list[ResolvedPoint]:
    """Return every point of every device, in config order, templates expanded."""
    return [
        _resolve(device.id, code, point)
        for device in config.devices
        for code, point in config.points_of(device)
    ]


def _resolve(device_id: str, code: str, point: PointConfig) -> ResolvedPoint:
    indicator = point.indicator
    unit = point.unit or indicator.unit
    limits = point.thresholds
    return ResolvedPoint(
        device_id=device_id,
        point=code,
        quota=point.quota,
        indicator_name=indicator.name_zh,
        table=point.address.table,
        start=point.address.start,
        dtype=point.address.type,
        byte_order=point.address.byte_order,
        word_order=point.address.word_order,
        bit=point.address.bit,
        scale=point.scale,
        offset=point.offset,
        unit=unit,
        canonical_unit=indicator.unit,
        thresholds=Limits(
            low_low=_canonical(indicator, limits.low_low, unit),
            low=_canonical(indicator, limits.low, unit),
            high=_canonical(indicator, limits.high, unit),
            high_high=_canonical(indicator, limits.high_high, unit),
        ),
        # A deadband is a difference: it scales with the unit but takes no offset.
        deadband=point.deadband * indicator.units[unit].factor,
    )


def _canonical(indicator: Indicator, value: float | None, unit: str) -> float | None:
    return None if value is None else indicator.to_canonical(value, unit)
