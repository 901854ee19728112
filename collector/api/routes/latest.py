"""`GET /v1/latest`: the newest reading of every point in scope.

(No `from __future__ import annotations` here: FastAPI reads the signatures at runtime.)
"""

from fastapi import APIRouter

from collector.api.deps import (
    DEFAULT_LIMIT,
    Auth,
    Cursor,
    Limit,
    Zone,
    next_cursor,
    point_after,
)
from collector.api.models import ListPage, ReadingOut
from collector.api.routes.readings import reading_out
from collector.storage.base import Storage


def create_router(storage: Storage) -> APIRouter:
    """The latest-readings route over `storage`."""
    router = APIRouter()

    @router.get("/v1/latest")
    async def latest(
        *,
        scope: Auth,
        zone: Zone,
        enterprise: str | None = None,
        gateway: str | None = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> ListPage[ReadingOut]:
        """The newest stored reading of every point in scope, by gateway and point.

        A reading stamped more than `ingest.ahead_allowance` past the collector's clock at its
        arrival (a gateway clock wrong; flagged `ahead_of_collector` in /v1/readings) is never
        a point's newest here.
        """
        page = await storage.latest(
            scope,
            enterprise=enterprise,
            gateway=gateway,
            after=point_after("latest", cursor),
            limit=limit,
        )
        return ListPage[ReadingOut](
            items=[reading_out(r, zone) for r in page.items],
            next=next_cursor("latest", page, lambda r: (r.gateway, r.point)),
        )

    return router
