"""`GET /v1/gateways`: the gateways in scope, whether they are online and how far they are stored.

(No `from __future__ import annotations` here: FastAPI reads the signatures at runtime.)
"""

from collections.abc import Callable
from datetime import timezone

from fastapi import APIRouter

from collector.api.core import is_online, last_seen, shown_optional_time
from collector.api.deps import (
    DEFAULT_LIMIT,
    Auth,
    Cursor,
    Limit,
    Zone,
    cursor_position,
    next_cursor,
)
from collector.api.models import GatewayOut, ListPage
from collector.readmodel import GatewayView
from collector.storage.base import Storage


def _gateway(view: GatewayView, now: float, offline_after: float, zone: timezone) -> GatewayOut:
    seen = last_seen(view)
    return GatewayOut(
        gateway=view.gateway,
        enterprise=view.enterprise,
        district=view.district,
        online=is_online(view, now, offline_after),
        last_seen=shown_optional_time(seen, zone),
        epoch=view.epoch,
        acked_through=view.acked_through,
        gaps=view.gaps,
    )


def create_router(
    storage: Storage,
    *,
    offline_after: float,
    clock: Callable[[], float],
) -> APIRouter:
    """The gateways route over `storage`; `online` is judged against `clock`."""
    router = APIRouter()

    @router.get("/v1/gateways")
    async def gateways(
        *, scope: Auth, zone: Zone, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
    ) -> ListPage[GatewayOut]:
        """Gateways in scope, by code: online or not, last seen, how far stored, open holes."""
        position = cursor_position("gateways", cursor, (str,))
        after = None if position is None else (str(position[0]),)
        page = await storage.gateway_views(scope, after=after, limit=limit)
        now = clock()
        return ListPage[GatewayOut](
            items=[_gateway(view, now, offline_after, zone) for view in page.items],
            next=next_cursor("gateways", page, lambda v: (v.gateway,)),
        )

    return router
