"""The collector's storage port: one Protocol and its error tree (records: `collector.model`).

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

from collections.abc import Collection, Mapping
from typing import Protocol

from collector.model import (
    AuditEntry,
    BatchResult,
    Gateway,
    GatewayKey,
    IngestBatch,
    KeyGrant,
    Reason,
    StreamState,
)
from collector.readmodel import (
    AlarmAfter,
    AlarmFilter,
    AlarmState,
    BucketAfter,
    BucketGrid,
    BucketRow,
    GapAfter,
    GapRow,
    GapState,
    GatewayAfter,
    GatewayProfile,
    GatewayView,
    Page,
    PointAfter,
    PointMetaRow,
    PointRow,
    ReadingAfter,
    ReadingFilter,
    ReadingRow,
    Scope,
    SourcedReading,
)


class StorageError(Exception):
    """The storage cannot do what was asked."""


class UnsupportedStorageError(StorageError):
    """The storage URL names a backend this build does not have."""


class RegistryError(StorageError):
    """A gateway or key registration contradicts what is stored."""


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

    async def buckets(
        self,
        scope: Scope,
        where: ReadingFilter,
        grid: BucketGrid,
        *,
        after: BucketAfter | None,
        limit: int,
    ) -> Page[BucketRow]:
        """Readings aggregated in the database per point and bucket of `grid`.

        Ordered by (gateway, point, bucket start); `where` picks the readings, so the first and
        last buckets of a time window may be partial.
        """
        ...

    async def alarms(
        self, scope: Scope, where: AlarmFilter, *, after: AlarmAfter | None, limit: int
    ) -> Page[AlarmState]:
        """Alarms ordered by (since, gateway, alarm_id)."""
        ...

    async def gaps(
        self,
        scope: Scope,
        *,
        gateway: str | None,
        state: GapState | None,
        after: GapAfter | None,
        limit: int,
    ) -> Page[GapRow]:
        """Open holes and stored gap records, ordered by (gateway, rowid)."""
        ...

    # exports (no scope: operator commands)
    async def gateway_profile(self, gateway: str) -> GatewayProfile | None:
        """Domain and mine code from the gateway's newest stored block; None without blocks."""
        ...

    async def point_metas(self, gateway: str) -> Mapping[str, PointMetaRow]:
        """The newest meta description of each point of a gateway, by point."""
        ...

    async def sourced_readings(
        self, where: ReadingFilter, *, after: ReadingAfter | None, limit: int
    ) -> Page[SourcedReading]:
        """Readings with their source block, ordered like `readings`."""
        ...
