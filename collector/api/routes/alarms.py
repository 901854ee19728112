"""`GET /v1/alarms`: alarms raised and cleared at the edge.

(No `from __future__ import annotations` here: FastAPI reads the signatures at runtime.)
"""

from collections.abc import Callable
from datetime import timezone
from typing import Annotated

from fastapi import APIRouter, Query

from collector.api.core import shown_optional_time, shown_time, shown_value
from collector.api.deps import (
    DEFAULT_LIMIT,
    Auth,
    Cursor,
    From,
    Limit,
    To,
    Zone,
    cursor_position,
    next_cursor,
    time_range,
)
from collector.api.models import AlarmOut, ListPage
from collector.model import AHEAD_ALLOWANCE
from collector.readmodel import AlarmAfter, AlarmFilter, AlarmState
from collector.storage.base import Storage


def alarm_out(state: AlarmState, zone: timezone, *, active: bool) -> AlarmOut:
    """An alarm as the API shows it (here and in /v1/stream), times at `zone`.

    `active`: AlarmState.active_at the collector's clock as it answers (here) or as it wrote
    the event (the stream).
    """
    return AlarmOut(
        gateway=state.gateway,
        alarm_id=state.alarm_id,
        point=state.point,
        quota=state.quota,
        level=state.level,
        raised_at=shown_optional_time(state.raised_at, zone),
        cleared_at=shown_optional_time(state.cleared_at, zone),
        value=shown_value(state.value),
        threshold=shown_value(state.threshold),
        unit=state.unit,
        trigger_t=shown_time(state.trigger_t, zone),
        flags=list(state.flags),
        active=active,
    )


def _alarm_after(cursor: str | None) -> AlarmAfter | None:
    position = cursor_position("alarms", cursor, (float, str, str))
    return None if position is None else (float(position[0]), str(position[1]), str(position[2]))


def create_router(
    storage: Storage, *, clock: Callable[[], float], allowance: float = AHEAD_ALLOWANCE
) -> APIRouter:
    """The alarms route over `storage`.

    `active` is judged at `clock` with `allowance` (the config's `ingest.ahead_allowance`) for
    a raise stamped ahead at arrival.
    """
    router = APIRouter()

    @router.get("/v1/alarms")
    async def alarms(
        *,
        scope: Auth,
        zone: Zone,
        active: Annotated[
            bool | None,
            Query(
                description="true: raised and not cleared (by a raise stamped ahead of the"
                " collector's clock only once it is no more than `ingest.ahead_allowance` past"
                " it); false: the others"
            ),
        ] = None,
        gateway: str | None = None,
        from_: From = None,
        to: To = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> ListPage[AlarmOut]:
        """Alarms whose span [raised_at, cleared_at) meets [from, to), oldest first."""
        after = _alarm_after(cursor)
        t_from, t_to = time_range(from_, to)
        now = clock()
        where = AlarmFilter(
            gateway=gateway,
            active=active,
            t_from=t_from,
            t_to=t_to,
            now=now,
            allowance=allowance,
        )
        page = await storage.alarms(scope, where, after=after, limit=limit)
        return ListPage[AlarmOut](
            items=[alarm_out(a, zone, active=a.active_at(now, allowance)) for a in page.items],
            next=next_cursor("alarms", page, lambda a: (a.since, a.gateway, a.alarm_id)),
        )

    return router
