"""The collector's storage port: one interface and its error tree (records: `collector.model`).

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

import abc
from collections.abc import Collection, Mapping

from collector.model import BatchResult, Gateway, GatewayKey, IngestBatch, KeyGrant
from collector.storage.reads import QueryReads


class StorageError(Exception):
    """The storage cannot do what was asked."""


class BlocksDeferredError(StorageError):
    """Some blocks of the batch cannot be stored in this ingest; nothing was committed.

    `deferred` are their indexes in `batch.blocks` (never empty): the batch without them may
    be ingested at once (collector.ingest.deferral), and their resend stores them later.
    """

    def __init__(self, message: str, deferred: Collection[int]) -> None:
        super().__init__(message)
        self.deferred = frozenset(deferred)


class UnsupportedStorageError(StorageError):
    """The storage URL names a backend this build does not have."""


class RegistryError(StorageError):
    """A gateway or key registration contradicts what is stored."""


class Storage(QueryReads):
    """**Interface**: everything the collector keeps, behind one interface.

    Times are unix seconds (float). `ingest` is the only write on the hot path; it commits one
    transaction for the whole batch and returns only after the commit is durable, because the
    caller acknowledges on its result. The reads that are one query on every backend (stream,
    audit, gateway_views, points, latest, readings, alarms, gaps, gateway_profile, point_metas,
    sourced_readings, buckets, gateways, keys) are `collector.storage.reads.QueryReads`', a
    backend implements the rest.
    """

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise StorageError unless the database answers."""

    # registry
    @abc.abstractmethod
    async def register(self, gateway: Gateway, key: GatewayKey) -> None:
        """Register a gateway (or find it registered identically) and add a key to it."""

    @abc.abstractmethod
    async def revoke(self, gateway: str, kid: str | None, at: float) -> tuple[str, ...]:
        """Revoke one key (or every active key) of a gateway; return the kids revoked."""

    @abc.abstractmethod
    async def grants(self, kids: Collection[str]) -> Mapping[str, KeyGrant]:
        """The registered keys among `kids`, each with its owning gateway."""

    @abc.abstractmethod
    async def find_gateways(self, ids: Collection[str]) -> Mapping[str, Gateway]:
        """The registered gateways among `ids`."""

    # ingest
    @abc.abstractmethod
    async def ingest(self, batch: IngestBatch) -> BatchResult:
        """Store blocks once, audit rejections, apply statuses: one durable transaction."""
