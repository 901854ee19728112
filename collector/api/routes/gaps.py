"""`GET /v1/gaps`: holes in the stored sequences, and readings declared lost.

(No `from __future__ import annotations` here: FastAPI reads the signatures at runtime.)
"""

from datetime import timezone
from typing import Annotated

from fastapi import APIRouter, Query

from collector.api.core import shown_optional_time
from collector.api.deps import (
    DEFAULT_LIMIT,
    Auth,
    Cursor,
    Limit,
    Zone,
    cursor_position,
    next_cursor,
)
from collector.api.models import GapOut, ListPage
from collector.readmodel import GapAfter, GapRow, GapState
from collector.storage.base import Storage


def gap_out(row: GapRow, zone: timezone) -> GapOut:
    """A gap as the API shows it (here and in /v1/stream), times at `zone`."""
    return GapOut(
        gateway=row.gateway,
        epoch=row.epoch,
        from_seq=row.from_seq,
        to_seq=row.to_seq,
        t_from=shown_optional_time(row.t_from, zone),
        t_to=shown_optional_time(row.t_to, zone),
        lost=row.lost,
        reason=row.reason,
        state=row.state.value,
    )


def _gap_after(cursor: str | None) -> GapAfter | None:
    position = cursor_position("gaps", cursor, (str, int))
    return None if position is None else (str(position[0]), int(position[1]))


def create_router(storage: Storage) -> APIRouter:
    """The gaps route over `storage`."""
    router = APIRouter()

    @router.get("/v1/gaps")
    async def gaps(
        *,
        scope: Auth,
        zone: Zone,
        gateway: str | None = None,
        state: Annotated[
            GapState | None,
            Query(description="open: blocks still expected; closed: declared lost"),
        ] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> ListPage[GapOut]:
        """Open holes in the stored sequences and the gap records that declared readings lost."""
        page = await storage.gaps(
            scope, gateway=gateway, state=state, after=_gap_after(cursor), limit=limit
        )
        return ListPage[GapOut](
            items=[gap_out(row, zone) for row in page.items],
            next=next_cursor("gaps", page, lambda row: (row.gateway, row.rowid)),
        )

    return router
