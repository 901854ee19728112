"""`GET /v1/points`: the points gateways have reported or described, with their meta.

(No `from __future__ import annotations` here: FastAPI reads the signatures at runtime.)
"""

from fastapi import APIRouter

from collector.api.deps import DEFAULT_LIMIT, Auth, Cursor, Limit, next_cursor, point_after
from collector.api.models import ListPage, PointOut
from collector.storage.base import Storage


def create_router(storage: Storage) -> APIRouter:
    """The points route over `storage`."""
    router = APIRouter()

    @router.get("/v1/points")
    async def points(
        *,
        scope: Auth,
        gateway: str | None = None,
        quota: str | None = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> ListPage[PointOut]:
        """Points in scope, as reported or described in signed meta; filter by gateway or quota."""
        page = await storage.points(
            scope,
            gateway=gateway,
            quota=quota,
            after=point_after("points", cursor),
            limit=limit,
        )
        return ListPage[PointOut](
            items=[
                PointOut(
                    gateway=p.gateway,
                    point=p.point,
                    quota=p.quota,
                    unit=p.unit,
                    name=p.name,
                    device=p.device,
                    thresholds=dict(p.thresholds),
                )
                for p in page.items
            ],
            next=next_cursor("points", page, lambda p: (p.gateway, p.point)),
        )

    return router
