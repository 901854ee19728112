"""`GET /v1/readings`: stored readings by point, gateway and time.

(No `from __future__ import annotations` here: FastAPI reads the signatures at runtime.)
"""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from collector.api.deps import (
    DEFAULT_LIMIT,
    Authenticate,
    Cursor,
    From,
    Limit,
    To,
    bad_request,
    cursor_position,
    next_cursor,
    parse_time,
)
from collector.api.models import ListPage, ReadingOut
from collector.model import ReadingAfter, ReadingFilter, ReadingRow, Scope
from collector.storage.base import Storage
from specs.records import iso_time


def reading_out(row: ReadingRow) -> ReadingOut:
    """A stored reading as the API shows it (here and in /v1/latest)."""
    return ReadingOut.model_validate(
        {
            "gateway": row.gateway,
            "point": row.point,
            "quota": row.quota,
            "t": iso_time(row.t),
            "value": row.value,
            "unit": row.unit,
            "quality": row.quality,
            "flags": list(row.flags),
        }
    )


def _reading_after(cursor: str | None) -> ReadingAfter | None:
    position = cursor_position("readings", cursor, (str, str, float, int))
    if position is None:
        return None
    return (str(position[0]), str(position[1]), float(position[2]), int(position[3]))


def create_router(storage: Storage, authenticate: Authenticate) -> APIRouter:
    """The readings route over `storage`."""
    router = APIRouter()
    Auth = Annotated[Scope, Depends(authenticate)]  # noqa: N806 - a type alias, not a value

    @router.get("/v1/readings")
    async def readings(
        *,
        scope: Auth,
        point: str | None = None,
        gateway: str | None = None,
        from_: From = None,
        to: To = None,
        every: Annotated[str | None, Query(description="downsampling: not supported yet")] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> ListPage[ReadingOut]:
        if every is not None:
            raise bad_request("every= (downsampling) is not supported yet")
        after = _reading_after(cursor)
        where = ReadingFilter(
            gateway=gateway,
            point=point,
            t_from=parse_time("from", from_),
            t_to=parse_time("to", to),
        )
        page = await storage.readings(scope, where, after=after, limit=limit)
        return ListPage[ReadingOut](
            items=[reading_out(r) for r in page.items],
            next=next_cursor("readings", page, lambda r: (r.gateway, r.point, r.t, r.rowid)),
        )

    return router
