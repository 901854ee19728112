"""The Storage protocol's reads that do not depend on the backend, once for both.

`QueryReads` answers them (`collector.storage.queries`, `archive`, `feed`, `quality`); a store
gives its feed and quality statements and says how a read gets a `Fetch` (`_reading`): SQLite
on its reader connection, PostgreSQL on a pooled connection whose driver errors name the read.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager

from collector.feed.core import FeedFilter, FeedPage, FeedPosition
from collector.model import AuditEntry, Reason, StreamState
from collector.quality.core import QualityCounts, QualityFilter, QualityGroup
from collector.readmodel import (
    AlarmAfter,
    AlarmFilter,
    AlarmState,
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
from collector.storage import archive, export_queries, feed, quality, queries
from collector.storage.feed import FeedStatements
from collector.storage.queries import Fetch
from collector.verify.core import StoredBlock, StoredBlockAfter


class QueryReads(abc.ABC):
    """The reads of `collector.storage.base.Storage` that `collector.storage.queries` answers."""

    _feed: FeedStatements
    """The backend's live feed statements."""
    _quality: str
    """The backend's aggregates of GET /v1/quality (`collector.storage.quality`)."""

    @abc.abstractmethod
    def _reading(self, action: str) -> AbstractAsyncContextManager[Fetch]:
        """Where a read runs; `action` names it in a storage error."""

    async def stream(self, gateway: str, epoch: str) -> StreamState | None:
        """The stored progress of one sequence."""
        async with self._reading("reading a stream") as fetch:
            return await queries.stream(fetch, gateway, epoch)

    async def audit(
        self, *, gateway: str | None = None, reason: Reason | None = None, limit: int = 1000
    ) -> tuple[AuditEntry, ...]:
        """Audit rows, oldest first."""
        async with self._reading("reading the audit trail") as fetch:
            return await queries.audit(fetch, gateway=gateway, reason=reason, limit=limit)

    async def gateway_views(
        self, scope: Scope, *, after: GatewayAfter | None, limit: int
    ) -> Page[GatewayView]:
        """Gateways with their ingest progress, ordered by id."""
        async with self._reading("reading gateways") as fetch:
            return await queries.gateway_views(fetch, scope, after=after, limit=limit)

    async def points(
        self,
        scope: Scope,
        *,
        gateway: str | None,
        quota: str | None,
        after: PointAfter | None,
        limit: int,
    ) -> Page[PointRow]:
        """Points gateways have reported or described, ordered by (gateway, point)."""
        async with self._reading("reading points") as fetch:
            return await queries.points(
                fetch, scope, gateway=gateway, quota=quota, after=after, limit=limit
            )

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
        async with self._reading("reading latest values") as fetch:
            return await queries.latest(
                fetch, scope, enterprise=enterprise, gateway=gateway, after=after, limit=limit
            )

    async def readings(
        self, scope: Scope, where: ReadingFilter, *, after: ReadingAfter | None, limit: int
    ) -> Page[ReadingRow]:
        """Readings ordered by (gateway, point, t, rowid)."""
        async with self._reading("reading readings") as fetch:
            return await queries.readings(fetch, scope, where, after=after, limit=limit)

    async def alarms(
        self, scope: Scope, where: AlarmFilter, *, after: AlarmAfter | None, limit: int
    ) -> Page[AlarmState]:
        """Alarms ordered by (since, gateway, alarm_id)."""
        async with self._reading("reading alarms") as fetch:
            return await queries.alarms(fetch, scope, where, after=after, limit=limit)

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
        async with self._reading("reading gaps") as fetch:
            return await queries.gaps(
                fetch, scope, gateway=gateway, state=state, after=after, limit=limit
            )

    async def gateway_profile(self, gateway: str) -> GatewayProfile | None:
        """Domain and mine code from the gateway's newest stored block; None without blocks."""
        async with self._reading("reading a gateway profile") as fetch:
            return await export_queries.gateway_profile(fetch, gateway)

    async def point_metas(self, gateway: str) -> Mapping[str, PointMetaRow]:
        """The newest meta description of each point of a gateway, by point."""
        async with self._reading("reading point metas") as fetch:
            return await export_queries.point_metas(fetch, gateway)

    async def sourced_readings(
        self, where: ReadingFilter, *, after: ReadingAfter | None, limit: int
    ) -> Page[SourcedReading]:
        """Readings with their source block, ordered like `readings`."""
        async with self._reading("reading readings") as fetch:
            return await export_queries.sourced_readings(fetch, where, after=after, limit=limit)

    async def stored_blocks(
        self,
        scope: Scope,
        *,
        gateway: str | None,
        t_from: float | None,
        t_to: float | None,
        after: StoredBlockAfter | None,
        limit: int,
    ) -> Page[StoredBlock]:
        """Blocks received in [t_from, t_to), each with the stored block just below it."""
        async with self._reading("reading stored blocks") as fetch:
            return await archive.stored_blocks(
                fetch, scope, gateway=gateway, t_from=t_from, t_to=t_to, after=after, limit=limit
            )

    async def feed_head(self) -> FeedPosition:
        """The newest reading id and journal id, from one snapshot."""
        async with self._reading("reading the feed head") as fetch:
            return await feed.feed_head(fetch)

    async def feed_page(
        self,
        scope: Scope,
        where: FeedFilter,
        *,
        after: FeedPosition,
        upto: FeedPosition,
        limit: int,
    ) -> FeedPage:
        """Readings and journal rows in scope and filter with ids in (after, upto], ascending."""
        async with self._reading("reading the feed") as fetch:
            return await feed.feed_page(
                fetch, self._feed, scope, where, after=after, upto=upto, limit=limit
            )

    async def quality_counts(
        self,
        scope: Scope,
        where: QualityFilter,
        *,
        group: QualityGroup,
        start: float,
        end: float,
        after: str | None,
        limit: int,
    ) -> Page[QualityCounts]:
        """Per group key in scope and filter, ascending after `after`: counts over [start, end)."""
        async with self._reading("reading quality counts") as fetch:
            return await quality.quality_counts(
                fetch,
                self._quality,
                scope,
                where,
                group=group,
                start=start,
                end=end,
                after=after,
                limit=limit,
            )
