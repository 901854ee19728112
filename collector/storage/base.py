"""The collector's storage port: one Protocol, record types, and its error tree.

Every implementation (SQLite now, PostgreSQL later) keeps all ingest state in the database, so
that any collector process can acknowledge any gateway and may die at any moment (DESIGN 9).
An implementation decides *how* a batch becomes one transaction (SQLite: `BEGIN IMMEDIATE`;
PostgreSQL: row locks on `ingest_state`); the decisions inside it are the pure functions of
`collector.storage.core`, shared by every implementation.

Error tree::

    StorageError
    ├── UnsupportedStorageError   the storage URL names a backend this build does not have
    └── RegistryError             a gateway or key registration contradicts what is stored
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from specs.block import Block
from specs.signing import Signature


class StorageError(Exception):
    """The storage cannot do what was asked."""


class UnsupportedStorageError(StorageError):
    """The storage URL names a backend this build does not have."""


class RegistryError(StorageError):
    """A gateway or key registration contradicts what is stored."""


# --- registry -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gateway:
    """A registered gateway: who owns it and where it is."""

    gateway: str
    enterprise: str
    district: str
    registered_at: float


@dataclass(frozen=True, slots=True)
class GatewayKey:
    """A public key registered for one gateway."""

    kid: str
    gateway: str
    alg: str
    public_pem: bytes
    added_at: float
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class KeyGrant:
    """A key together with the gateway that owns it (what verification needs)."""

    key: GatewayKey
    owner: Gateway


# --- ingest ---------------------------------------------------------------------------------


class Reason(enum.StrEnum):
    """Why a message was not stored (or stored only once): the audit vocabulary."""

    BAD_ALGORITHM = "bad_algorithm"
    UNKNOWN_KEY = "unknown_key"
    REVOKED_KEY = "revoked_key"
    KEY_NOT_OWNED = "key_not_owned"
    BAD_SIGNATURE = "bad_signature"
    MALFORMED = "malformed"
    TOPIC_MISMATCH = "topic_mismatch"
    UNKNOWN_GATEWAY = "unknown_gateway"
    UNSUPPORTED_TOPIC = "unsupported_topic"
    DUPLICATE = "duplicate"
    SEQ_CONFLICT = "seq_conflict"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One rejected (or deduplicated) message, with enough to find it again."""

    at: float
    gateway: str | None
    topic: str
    reason: Reason
    detail: str
    payload_hash: str


@dataclass(frozen=True, slots=True)
class IncomingBlock:
    """A block whose signature verified and whose header matches its topic."""

    topic: str
    block: Block
    signature: Signature
    received_at: float

    @property
    def stream(self) -> tuple[str, str]:
        """The (gateway, epoch) sequence this block belongs to."""
        return (self.block.header.gateway, self.block.header.epoch)


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """A gateway's retained status message (heartbeat or last will)."""

    gateway: str
    online: bool
    at: float


@dataclass(frozen=True, slots=True)
class IngestBatch:
    """Everything one batch of MQTT messages asks the storage to commit, in one transaction."""

    blocks: Sequence[IncomingBlock] = ()
    audits: Sequence[AuditEntry] = ()
    statuses: Sequence[StatusUpdate] = ()


class Outcome(enum.StrEnum):
    """What storing one incoming block did."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    SEQ_CONFLICT = "seq_conflict"

    @property
    def acknowledged(self) -> bool:
        """Whether the block's bytes are in the database (so the agent may forget them)."""
        return self is not Outcome.SEQ_CONFLICT


@dataclass(frozen=True, slots=True)
class StreamState:
    """How far one (gateway, epoch) sequence is stored.

    Every seq in 1..acked_through is stored; `missing` lists the holes between acked_through
    and max_seq, ascending and disjoint.
    """

    gateway: str
    epoch: str
    acked_through: int = 0
    max_seq: int = 0
    missing: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The committed outcome of one batch: one Outcome per block, and each touched stream."""

    outcomes: tuple[Outcome, ...]
    streams: Mapping[tuple[str, str], StreamState] = field(default_factory=dict)


# --- queries --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """Which districts a caller may see; `districts=None` means every district."""

    districts: frozenset[str] | None = None

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
    """A point a gateway has reported."""

    gateway: str
    point: str
    quota: str
    unit: str


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


@dataclass(frozen=True, slots=True)
class ReadingFilter:
    """Which readings to list."""

    gateway: str | None = None
    point: str | None = None
    t_from: float | None = None
    t_to: float | None = None


# Keyset positions: the sort key of the last item of the previous page.
GatewayAfter = tuple[str]
PointAfter = tuple[str, str]
ReadingAfter = tuple[str, str, float, int]


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list; `more` says whether another page follows the last item."""

    items: tuple[T, ...]
    more: bool


class Storage(Protocol):
    """**Protocol**: everything the collector keeps, behind one interface.

    Times are unix seconds (float). `ingest` is the only write on the hot path; it commits one
    transaction for the whole batch and returns only after the commit is durable, because the
    caller acknowledges on its result.
    """

    async def close(self) -> None:
        """Release connections."""
        ...

    async def ping(self) -> None:
        """Raise StorageError unless the database answers."""
        ...

    # registry
    async def register(self, gateway: Gateway, key: GatewayKey) -> None:
        """Register a gateway (or find it registered identically) and add a key to it."""
        ...

    async def revoke(self, gateway: str, kid: str | None, at: float) -> tuple[str, ...]:
        """Revoke one key (or every active key) of a gateway; return the kids revoked."""
        ...

    async def gateways(self) -> tuple[Gateway, ...]:
        """Every registered gateway, ordered by id."""
        ...

    async def keys(self, gateway: str | None = None) -> tuple[GatewayKey, ...]:
        """Registered keys (of one gateway, or all), revoked ones included."""
        ...

    async def grants(self, kids: Collection[str]) -> Mapping[str, KeyGrant]:
        """The registered keys among `kids`, each with its owning gateway."""
        ...

    async def find_gateways(self, ids: Collection[str]) -> Mapping[str, Gateway]:
        """The registered gateways among `ids`."""
        ...

    # ingest
    async def ingest(self, batch: IngestBatch) -> BatchResult:
        """Store blocks once, audit rejections, apply statuses: one durable transaction."""
        ...

    async def stream(self, gateway: str, epoch: str) -> StreamState | None:
        """The stored progress of one sequence."""
        ...

    async def audit(
        self, *, gateway: str | None = None, reason: Reason | None = None, limit: int = 1000
    ) -> tuple[AuditEntry, ...]:
        """Audit rows, oldest first."""
        ...

    # API queries
    async def gateway_views(
        self, scope: Scope, *, after: GatewayAfter | None, limit: int
    ) -> Page[GatewayView]:
        """Gateways with their ingest progress, ordered by id."""
        ...

    async def points(
        self,
        scope: Scope,
        *,
        gateway: str | None,
        quota: str | None,
        after: PointAfter | None,
        limit: int,
    ) -> Page[PointRow]:
        """Points gateways have reported, ordered by (gateway, point)."""
        ...

    async def latest(
        self,
        scope: Scope,
        *,
        enterprise: str | None,
        gateway: str | None,
        after: PointAfter | None,
        limit: int,
    ) -> Page[ReadingRow]:
        """The newest reading of each point, ordered by (gateway, point)."""
        ...

    async def readings(
        self, scope: Scope, where: ReadingFilter, *, after: ReadingAfter | None, limit: int
    ) -> Page[ReadingRow]:
        """Readings ordered by (gateway, point, t, rowid)."""
        ...
