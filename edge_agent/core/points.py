"""The flat list of points a gateway reads: templates expanded, units and limits resolved.

Pure: a checked `SiteConfig` in, `ResolvedPoint`s out. The poll loops, normalization, alarm
evaluation and `edge-agent check` all work from this list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from drivers.modbus.codec import DataType as WordLayout
from drivers.modbus.codec import register_count

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
class RegisterSource:
    """A Modbus point's place in the device's tables and how its registers decode."""

    table: Table
    start: int
    dtype: DataType
    byte_order: Order
    word_order: Order
    bit: int | None

    @property
    def register_count(self) -> int:
        """Return how many registers (or coils) the value occupies."""
        return register_count(WordLayout(self.dtype))


@dataclass(frozen=True, slots=True)
class NodeSource:
    """An OPC UA point's node id."""

    node: str


@dataclass(frozen=True, slots=True)
class PatternSource:
    """A serial ASCII point's pattern: a regular expression with a `value` group."""

    pattern: str


PointSource = RegisterSource | NodeSource | PatternSource
"""Where a point's value is read, by driver family."""
_Source = TypeVar("_Source", RegisterSource, NodeSource, PatternSource)


@dataclass(frozen=True, slots=True)
class ResolvedPoint:
    """One point ready to poll: where to read it and how to turn raw into canonical values.

    `source` says where the value is read (a Modbus register, an OPC UA node, a pattern in an
    ASCII line). `value = raw * scale + offset` is in `unit` (what the instrument reports); the
    catalogue converts it to `canonical_unit`. `thresholds` and `deadband` are canonical.

    `register` is a Modbus point's `RegisterSource`; on other points it raises TypeError, as
    asking an OPC UA point for its register is a bug.
    """

    device_id: str
    point: str
    quota: str
    indicator_name: str
    source: PointSource
    scale: float
    offset: float
    unit: str
    canonical_unit: str
    thresholds: Limits
    deadband: float
    rates: tuple[RateLimit, ...] = ()

    def source_as(self, kind: type[_Source], what: str) -> _Source:
        """Return the point's source, which a driver kind expects to be a `kind`.

        Raises:
            TypeError: the point is read another way; `what` names the kind of point asked
                for ("a Modbus", "an OPC UA").
        """
        if not isinstance(self.source, kind):
            raise TypeError(f"{self.point} is not {what} point: it is read by {self.source}")
        return self.source

    @property
    def register(self) -> RegisterSource:
        """Return the Modbus address of a register point.

        Raises:
            TypeError: the point is not read from Modbus registers.
        """
        return self.source_as(RegisterSource, "a Modbus")


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
        source=_source(point),
        scale=point.scale,
        offset=point.offset,
        unit=unit,
        canonical_unit=indicator.unit,
        thresholds=Limits(**limits),
        # A deadband is a difference: it scales with the unit but takes no offset.
        deadband=point.deadband * indicator.units[unit].factor,
        rates=tuple(_rate(indicator, rate) for rate in point.effective_rates()),
    )


def _source(point: PointConfig) -> PointSource:
    if point.address is not None:
        address = point.address
        return RegisterSource(
            table=address.table,
            start=address.start,
            dtype=address.type,
            byte_order=address.byte_order,
            word_order=address.word_order,
            bit=address.bit,
        )
    if point.node is not None:
        return NodeSource(point.node)
    if point.pattern is not None:
        return PatternSource(point.pattern)
    # The device model refuses a point without its source key; kept for type narrowing.
    raise ValueError(f"point {point.point} has no address, node or pattern")


def _rate(indicator: Indicator, rate: RateConfig) -> RateLimit:
    # Here, not at the top: the running agent holds resolved points but never the config
    # package (pydantic: G7), which only resolving them reads.
    from edge_agent.config import RATE_PERIODS, rate_unit_parts  # noqa: PLC0415

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
