"""The Storage protocol's reads that do not depend on the backend, once for both.

Each read is the backend-neutral query function itself (`collector.storage.queries`,
`export_queries`, `registry_reads`, `archive`, `feed`, `quality`), bound as a method by `_read`:
a store says how a read gets a `Fetch` (`_reading`: SQLite on its reader connection, PostgreSQL
on a pooled connection whose driver errors name the read) and gives its feed and quality
statements.
`QueryReads` holds the reads of `collector.storage.base.Storage`, `CapabilityReads` adds those
of the capabilities BlockArchive, FeedJournal, QualityStats and TokenStore.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Concatenate, ParamSpec, TypeVar

from collector.readmodel import BucketAfter, BucketGrid, BucketRow, Page, ReadingFilter, Scope
from collector.storage import archive, export_queries, feed, quality, queries, registry_reads
from collector.storage.buckets import BucketQueries, bucket_page, rollups_answer
from collector.storage.feed import FeedStatements
from collector.storage.queries import Fetch

P = ParamSpec("P")
R = TypeVar("R")
D = TypeVar("D")


def _read(
    query: Callable[Concatenate[Fetch, P], Awaitable[R]], action: str
) -> Callable[Concatenate[QueryReads, P], Awaitable[R]]:
    """`query` as a store's method: run where the store reads, `action` naming it in errors."""

    async def read(self: QueryReads, /, *args: P.args, **kwargs: P.kwargs) -> R:
        async with self._reading(action) as fetch:
            return await query(fetch, *args, **kwargs)

    read.__doc__ = query.__doc__
    return read


def _dialect_read(
    query: Callable[Concatenate[Fetch, D, P], Awaitable[R]],
    action: str,
    dialect: Callable[[CapabilityReads], D],
) -> Callable[Concatenate[CapabilityReads, P], Awaitable[R]]:
    """`_read` for a query that also takes the store's statements (`dialect` picks them)."""

    async def read(self: CapabilityReads, /, *args: P.args, **kwargs: P.kwargs) -> R:
        async with self._reading(action) as fetch:
            return await query(fetch, dialect(self), *args, **kwargs)

    read.__doc__ = query.__doc__
    return read


class QueryReads(abc.ABC):
    """The reads of `collector.storage.base.Storage` that `collector.storage.queries` answers."""

    @abc.abstractmethod
    def _reading(self, action: str) -> AbstractAsyncContextManager[Fetch]:
        """Where a read runs; `action` names it in a storage error."""

    @abc.abstractmethod
    def _bucket_queries(
        self, rollups: bool, scope: Scope, where: ReadingFilter, grid: BucketGrid
    ) -> AbstractAsyncContextManager[BucketQueries]:
        """A bucket page's queries where the store reads: on the rollups, or the readings."""

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
        last buckets of a time window may be partial. The per-minute rollups answer when they
        give the buckets the readings would (`rollups_answer`: `avg` to within the rounding
        of a float sum, the rest exactly).
        """
        rollups = rollups_answer(grid, where)
        async with self._bucket_queries(rollups, scope, where, grid) as queries:
            return await bucket_page(queries, grid, after=after, limit=limit)

    stream = _read(queries.stream, "reading a stream")
    audit = _read(queries.audit, "reading the audit trail")
    gateway_views = _read(queries.gateway_views, "reading gateways")
    points = _read(queries.points, "reading points")
    latest = _read(queries.latest, "reading latest values")
    readings = _read(queries.readings, "reading readings")
    alarms = _read(queries.alarms, "reading alarms")
    gaps = _read(queries.gaps, "reading gaps")
    gateway_profile = _read(export_queries.gateway_profile, "reading a gateway profile")
    point_metas = _read(export_queries.point_metas, "reading point metas")
    sourced_readings = _read(export_queries.sourced_readings, "reading readings")
    gateways = _read(registry_reads.gateways, "reading gateways")
    keys = _read(registry_reads.keys, "reading keys")


def _feed_statements(reads: CapabilityReads) -> FeedStatements:
    return reads.feed_statements


def _quality_aggregates(reads: CapabilityReads) -> str:
    return reads.quality_aggregates


class CapabilityReads(QueryReads):
    """QueryReads and the reads of BlockArchive, FeedJournal, QualityStats and TokenStore."""

    feed_statements: FeedStatements
    """The backend's live feed statements."""
    quality_aggregates: str
    """The backend's aggregates of GET /v1/quality (`collector.storage.quality`)."""

    stored_blocks = _read(archive.stored_blocks, "reading stored blocks")
    feed_head = _read(feed.feed_head, "reading the feed head")
    feed_page = _dialect_read(feed.feed_page, "reading the feed", _feed_statements)
    feed_issued = _dialect_read(feed.feed_issued, "reading the feed's ids", _feed_statements)
    quality_counts = _dialect_read(
        quality.quality_counts, "reading quality counts", _quality_aggregates
    )
    api_tokens = _read(registry_reads.api_tokens, "reading API tokens")
    token_by_hash = _read(registry_reads.token_by_hash, "reading API tokens")
