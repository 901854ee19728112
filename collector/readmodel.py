"""What the collector answers, as frozen records: scopes, rows, filters, pages, buckets.

The read side of the data model (the ingest side is `collector.model`): the storage port's
queries (`collector.storage.base`), the API and the exports speak these types; none of them
depends on a database.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from collector.model import AHEAD_ALLOWANCE, Reason

# --- queries --------------------------------------------------------------------------------

EVERY_DISTRICT: Final = "*"
"""A token's district that stands for every district."""


@dataclass(frozen=True, slots=True)
class Scope:
    """Which districts a caller may see; `districts=None` means every district."""

    districts: frozenset[str] | None = None

    @classmethod
    def of(cls, districts: Sequence[str]) -> Scope:
        """The scope of a token's districts: every district when they name `*`."""
        return cls() if EVERY_DISTRICT in districts else cls(frozenset(districts))

    def allows(self, district: str) -> bool:
        """Whether a gateway in `district` is visible."""
        return self.districts is None or district in self.districts


EVERYTHING = Scope()


@dataclass(frozen=True, slots=True)
class GatewayView:
    """A gateway's registry row and ingest progress; the API judges `online` from the times.

    `status_seen` is when its last status message arrived, `block_seen` its last block.
    """

    gateway: str
    enterprise: str
    district: str
    status_online: bool | None
    status_seen: float | None
    block_seen: float | None
    epoch: str | None
    acked_through: int | None
    gaps: int


@dataclass(frozen=True, slots=True)
class PointRow:
    """A point a gateway has reported or described; name, device, thresholds from its meta."""

    gateway: str
    point: str
    quota: str
    unit: str
    name: str | None = None
    device: str | None = None
    thresholds: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PointMetaRow:
    """The newest meta description of one point (for exports)."""

    gateway: str
    point: str
    quota: str
    unit: str
    name: str
    device: str
    thresholds: Mapping[str, float]
    issued_at: float


@dataclass(frozen=True, slots=True)
class GatewayProfile:
    """What a gateway's newest stored block says about its site."""

    gateway: str
    domain: str
    mine_code: str | None


@dataclass(frozen=True, slots=True)
class ReadingRow:
    """A stored reading; `rowid` only orders pages."""

    gateway: str
    point: str
    quota: str
    t: float
    value: float | None
    unit: str
    quality: str
    flags: tuple[str, ...]
    rowid: int = 0

    @property
    def position(self) -> ReadingAfter:
        """Its place in the readings' order: where the next page of readings starts after it."""
        return (self.gateway, self.point, self.t, self.rowid)


@dataclass(frozen=True, slots=True)
class ReadingFilter:
    """Which readings to list."""

    gateway: str | None = None
    point: str | None = None
    t_from: float | None = None
    t_to: float | None = None


@dataclass(frozen=True, slots=True)
class SourcedReading:
    """A stored reading with the block it came from: (epoch, seq, idx), domain, mine code."""

    reading: ReadingRow
    epoch: str
    seq: int
    idx: int
    domain: str | None
    mine_code: str | None


@dataclass(frozen=True, slots=True)
class AlarmState:
    """One alarm (gateway, alarm_id) as its raise and clear events so far describe it.

    Descriptive fields come from the raise once it is stored (from the clear until then).
    `since` orders alarms: raised_at, or cleared_at while the raise is unknown. `raised_in`
    and `cleared_in` name the records, as (epoch, seq, idx), that stated them. `raised_ahead`
    and `cleared_ahead`: that record's t was past `ingest.ahead_allowance` beyond the
    collector's clock at its block's arrival (collector.storage.ahead): a wrong gateway clock.
    """

    gateway: str
    alarm_id: str
    point: str
    quota: str
    level: str
    raised_at: float | None
    cleared_at: float | None
    value: float | None
    threshold: float | None
    unit: str
    trigger_t: float
    related: str | None = None
    detail: str | None = None
    raised_in: tuple[str, int, int] | None = None
    cleared_in: tuple[str, int, int] | None = None
    raised_ahead: bool = False
    cleared_ahead: bool = False

    @property
    def since(self) -> float:
        """The alarm's sort time."""
        if self.raised_at is not None:
            return self.raised_at
        assert self.cleared_at is not None  # noqa: S101 - every state has one of the two
        return self.cleared_at

    def active_at(self, now: float, allowance: float = AHEAD_ALLOWANCE) -> bool:
        """Raised and not cleared, at the collector's clock `now`.

        A raise stamped ahead at arrival counts once its time is no more than `allowance` past
        `now` (as readings: judged by the clock asking, so a collector clock that was slow, or
        a gateway's a few minutes fast, leaves no real alarm out for good); the flag stays.
        """
        if self.raised_at is None or self.cleared_at is not None:
            return False
        return not self.raised_ahead or self.raised_at <= now + allowance

    @property
    def flags(self) -> tuple[str, ...]:
        """`ahead_of_collector` when its raise or clear was stamped ahead, as readings are."""
        return (Reason.AHEAD_OF_COLLECTOR.value,) if self.raised_ahead or self.cleared_ahead else ()


@dataclass(frozen=True, slots=True)
class AlarmFilter:
    """Which alarms to list.

    `active`: True = raised and not cleared (AlarmState.active_at `now` and `allowance`; no
    `now`: never by a raise stamped ahead); False = everything else. `t_from`/`t_to` keep
    alarms whose span [since, cleared_at) meets [t_from, t_to) (an open alarm spans to now).
    """

    gateway: str | None = None
    active: bool | None = None
    t_from: float | None = None
    t_to: float | None = None
    now: float | None = None
    allowance: float = AHEAD_ALLOWANCE

    @property
    def ahead_bound(self) -> float | None:
        """The latest raise time stamped ahead that is active now (None: none is)."""
        return None if self.now is None else self.now + self.allowance


class GapState(enum.StrEnum):
    """Whether a gap is still expected to fill (open) or declared lost (closed)."""

    OPEN = "open"
    CLOSED = "closed"


MISSING: Final = "missing"
"""The reason of an open gap: blocks missing, still expected, asked for by the ACK."""


@dataclass(frozen=True, slots=True)
class GapRow:
    """One gap as `GET /v1/gaps` lists it.

    Open: a hole `from_seq`..`to_seq` of (gateway, epoch) still expected (reason `missing`,
    times and `lost` unknown). Closed: a stored gap record, with its reason, `lost`, time span
    and the seq range it declares (`epoch` None: none). `rowid` only orders pages.
    """

    gateway: str
    epoch: str | None
    from_seq: int | None
    to_seq: int | None
    t_from: float | None
    t_to: float | None
    lost: int | None
    reason: str
    state: GapState
    rowid: int = 0


# Keyset positions: the sort key of the last item of the previous page.
GatewayAfter = tuple[str]
PointAfter = tuple[str, str]
ReadingAfter = tuple[str, str, float, int]
AlarmAfter = tuple[float, str, str]
GapAfter = tuple[str, int]


T = TypeVar("T")
AfterT = TypeVar("AfterT")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list; `more` says whether another page follows the last item."""

    items: tuple[T, ...]
    more: bool

    @classmethod
    def of(cls, items: Sequence[T], limit: int) -> Page[T]:
        """The first `limit` of `items`, fetched one past `limit` to tell whether more follow."""
        return cls(tuple(items[:limit]), more=len(items) > limit)


async def pages(
    fetch: Callable[[AfterT | None], Awaitable[Page[T]]],
    position: Callable[[T], AfterT],
    after: AfterT | None = None,
) -> AsyncIterator[Page[T]]:
    """Every page of a list from `after` on (None: the start), one `fetch` at a time.

    Each page is fetched after the `position` of the previous page's last item, so memory
    stays one page; the pages end with one that says no more follow, or comes back empty.
    """
    while True:
        page = await fetch(after)
        yield page
        if not page.more or not page.items:
            return
        after = position(page.items[-1])


# --- buckets: readings aggregated per time bucket (GET /v1/readings?every=) -----------------


@dataclass(frozen=True, slots=True)
class BucketGrid:
    """Time buckets of `width` seconds: bucket k holds k * width <= t + offset < (k+1) * width.

    `offset` (seconds) moves where buckets start: 0 gives multiples of `width` since the epoch
    in UTC; a UTC offset's seconds (28800 for +08:00) make whole days start at local midnight.
    """

    width: int
    offset: int = 0

    def start(self, index: int) -> float:
        """The unix time where bucket `index` starts."""
        return float(index * self.width - self.offset)

    def index_at(self, start: float) -> int:
        """The index of the bucket starting at `start` (a value `start` gave)."""
        return round((start + self.offset) / self.width)


@dataclass(frozen=True, slots=True)
class BucketRow:
    """The readings of one point in one time bucket, aggregated by the database.

    `t` is where the bucket starts. `min`, `max`, `avg` and `count` cover the readings that
    have a value and are not of quality bad; `last` is the newest of them (all None, `count`
    0, when the bucket holds only bad or empty readings). `quota` and `unit` are those of every
    reading the row aggregates: a bucket in which a point changed them has a row for each.
    """

    gateway: str
    point: str
    quota: str
    unit: str
    t: float
    min: float | None
    max: float | None
    avg: float | None
    last: float | None
    count: int


BucketAfter = tuple[str, str, float, tuple[str, str] | None]
"""Keyset position of a bucket page: (gateway, point, bucket start, (quota, unit)).

A bucket in which the point changed quota or unit has a row per (quota, unit), in their
order; the label says after which of them the page ended (None: after the whole bucket, as
cursors made before buckets were split say)."""
