"""The flat list of points a gateway reads: templates expanded, units and limits resolved.

Pure: a checked `SiteConfig` in, `ResolvedPoint`s out. The poll loops, normalization, alarm
evaluation and `edge-agent check` all work from this list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edge_agent.config import RATE_PERIODS, REGISTER_COUNT, rate_unit_parts

if TYPE_CHECKING:
    from edge_agent.config import DataType, Order, PointConfig, RateConfig, SiteConfig, Table
    from specs.catalogue import Indicator


@dataclass(frozen=True, slots=True)
class Limits:
    """Alarm thresholds in the indicator's canonical unit; None where not set.

    Defaults from the catalogue are already filled in for families the point left empty.
    """

    low_low: float | None = None
    low: float | None = None
    high: float | None = None
    high_high: float | None = None
    level1: float | None = None
    level2: float | None = None
    alarm: float | None = None
    power_off: float | None = None
    restore: float | None = None
    blue: float | None = None
    yellow: float | None = None
    orange: float | None = None
    red: float | None = None


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A rate-of-change alarm: the change over `window` seconds, compared in `unit`.

    `per_second` turns canonical units per second into `unit` (`mm/h`: 3600 for a point in mm).
    `limit` and `deadband` are in `unit`.
    """

    window: float
    limit: float
    unit: str
    per_second: float
    deadband: float


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
    rates: tuple[RateLimit, ...] = ()

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
    limits = {
        **{k: indicator.to_canonical(v, unit) for k, v in point.thresholds.as_dict().items()},
        # Catalogue defaults are canonical already.
        **point.catalogue_defaults(),
    }
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
        thresholds=Limits(**limits),
        # A deadband is a difference: it scales with the unit but takes no offset.
        deadband=point.deadband * indicator.units[unit].factor,
        rates=tuple(_rate(indicator, rate) for rate in point.effective_rates()),
    )


def _rate(indicator: Indicator, rate: RateConfig) -> RateLimit:
    parts = rate_unit_parts(rate.unit)
    if parts is None:  # validation guarantees it; kept for type narrowing
        raise ValueError(f"rate unit {rate.unit!r} has no period")
    amount, period = parts
    # A rate is a difference per time: the unit's factor applies, its offset does not.
    return RateLimit(
        window=rate.window,
        limit=rate.limit,
        unit=rate.unit,
        per_second=RATE_PERIODS[period] / indicator.units[amount].factor,
        deadband=rate.deadband,
    )
