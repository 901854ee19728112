"""The flat list of points a gateway reads: templates expanded, units and limits resolved.

Pure: a checked `SiteConfig` in, `ResolvedPoint`s out. The poll loops, normalization, alarm
evaluation and `edge-agent check` all work from this list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

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


@dataclass(frozen=True, slots=True)
class ResolvedPoint:
    """One point ready to poll: where to read it and how to turn raw into canonical values.

    `source` says where the value is read (a Modbus register, an OPC UA node, a pattern in an
    ASCII line). `value = raw * scale + offset` is in `unit` (what the instrument reports); the
    catalogue converts it to `canonical_unit`. `thresholds` and `deadband` are canonical.

    `table`, `start`, `dtype`, `byte_order`, `word_order`, `bit` and `register_count` read
    through to a Modbus point's `RegisterSource`; on other points they raise TypeError, as
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

    @property
    def register(self) -> RegisterSource:
        """Return the Modbus address of a register point.

        Raises:
            TypeError: the point is not read from Modbus registers.
        """
        if not isinstance(self.source, RegisterSource):
            raise TypeError(f"{self.point} is not a Modbus point: it is read by {self.source}")
        return self.source

    @property
    def table(self) -> Table:
        """Return the Modbus table (see `register`)."""
        return self.register.table

    @property
    def start(self) -> int:
        """Return the first register (see `register`)."""
        return self.register.start

    @property
    def dtype(self) -> DataType:
        """Return the data type (see `register`)."""
        return self.register.dtype

    @property
    def byte_order(self) -> Order:
        """Return the byte order (see `register`)."""
        return self.register.byte_order

    @property
    def word_order(self) -> Order:
        """Return the word order (see `register`)."""
        return self.register.word_order

    @property
    def bit(self) -> int | None:
        """Return the bit of a bool in a register, if any (see `register`)."""
        return self.register.bit

    @property
    def register_count(self) -> int:
        """Return how many registers (or coils) the value occupies (see `register`)."""
        return self.register.register_count


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
