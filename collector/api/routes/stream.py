"""`GET /v1/stream`: server-sent events of readings, alarms, gaps and status changes.

Each event is one JSON object in the shape the list endpoints use for its type (`event:`
reading, alarm, gap or status); its `id:` is the feed position right after it, so a client
that reconnects with `Last-Event-ID` gets exactly the events after that one (positions come
from the database: this holds across collector restarts too). A new stream starts at the
newest event and first sends an `id:` of its own, without data, so that even a client that
saw no event yet resumes from where it connected.

The stream sleeps on the runtime's commit signal (woken after every ingest commit) and reads
the database from its position when woken; it also re-reads every `heartbeat` seconds (commits
of other processes), and keeps proxies open with SSE comment pings at the same pace. Each time
it wakes it asks whether its token is still valid: a stream whose token was revoked
(`collector tokens revoke`) ends there. A client that takes nothing of what it was sent for
`api.limits.send_timeout` loses its connection (collector.api.server) and, reconnecting with
Last-Event-ID, gets everything it missed; so does a client whose stream ended because a database
read failed (logged `stream_storage_failed`).

(No `from __future__ import annotations` here: FastAPI reads the signatures at runtime.)
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timezone
from typing import Annotated, Final

import structlog
from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from collector.api.core import shown_time
from collector.api.credentials import presented_token
from collector.api.deps import Auth, Zone, bad_request, token_check
from collector.api.routes.alarms import alarm_out
from collector.api.routes.gaps import gap_out
from collector.api.routes.readings import reading_out
from collector.feed.core import (
    KIND_NAMES,
    FeedEvent,
    FeedFilter,
    FeedPosition,
    JournalRow,
    PositionError,
    StatusChange,
    event_active,
    interleave,
    parse_kinds,
    parse_position,
)
from collector.feed.wakeup import CommitSignal
from collector.model import AHEAD_ALLOWANCE
from collector.readmodel import AlarmState, GapRow, ReadingRow, Scope
from collector.storage.base import Storage, StorageError
from collector.storage.capabilities import FeedJournal

PAGE: Final = 500
"""Rows of each kind per database read."""
RETRY_MS: Final = 2000
"""How long a client waits before reconnecting (the SSE `retry:` field)."""

log = structlog.get_logger("collector.api")


class StatusOut(BaseModel):
    """A gateway's status changed (the `status` event); `online` as its status message says."""

    gateway: str
    enterprise: str
    district: str
    online: bool
    at: str = Field(description="ISO 8601: when the collector received the status")


def _status(row: JournalRow, change: StatusChange, zone: timezone) -> StatusOut:
    return StatusOut(
        gateway=change.gateway,
        enterprise=row.enterprise,
        district=row.district,
        online=change.online,
        at=shown_time(change.at, zone),
    )


def _data(event: FeedEvent, zone: timezone, allowance: float) -> str:
    """The event's JSON, as the list endpoint of its type shows it.

    An alarm is `active` as the collector that wrote the event judged it then (kept in its
    row; a row of an older collector: judged at its `at` with `allowance`): whichever collector
    serves it, a client resuming later gets the same events, and the newest says the state.
    """
    item = event.item
    if isinstance(item, ReadingRow):
        return reading_out(item, zone).model_dump_json()
    happened = item.event
    if isinstance(happened, AlarmState):
        active = event_active(happened, item.at, item.active, allowance)
        return alarm_out(happened, zone, active=active).model_dump_json()
    if isinstance(happened, GapRow):
        return gap_out(happened, zone).model_dump_json(by_alias=True)  # `from`, `to`
    return _status(item, happened, zone).model_dump_json()


async def _events(
    *,
    feed: FeedJournal,
    commits: CommitSignal,
    scope: Scope,
    where: FeedFilter,
    start: FeedPosition,
    zone: timezone,
    heartbeat: float,
    allowance: float,
    admitted: Callable[[], Awaitable[bool]],
) -> AsyncIterator[ServerSentEvent]:
    yield ServerSentEvent(id=start.token, retry=RETRY_MS)
    position = start
    try:
        while not commits.closed and await admitted():
            # Read the generation first: a commit landing during the reads below wakes us at once.
            generation = commits.generation
            head = await feed.feed_head()
            while position.behind(head):
                page = await feed.feed_page(scope, where, after=position, upto=head, limit=PAGE)
                events, position = interleave(page, position, head)
                for event in events:
                    yield ServerSentEvent(
                        data=_data(event, zone, allowance),
                        event=event.kind.value,
                        id=event.position.token,
                    )
                    # Sending does not wait while the socket takes it: without a turn of the loop
                    # here a page went out in one go, and once the connection was lost (the client
                    # gone, or stalled past api.limits.send_timeout) its transport logged a
                    # warning for each event left in the page before uvicorn learnt of the loss.
                    await asyncio.sleep(0)
            await commits.wait_beyond(generation, heartbeat)
    except StorageError as exc:
        # The read is not this stream's to retry: the response ends cleanly, and the client
        # reconnects after `retry:` with Last-Event-ID, the id of the last event it got, so
        # it misses nothing (a traceback out of here dropped the connection mid-chunk).
        log.warning("stream_storage_failed", error=str(exc), position=position.token)


def create_router(
    storage: Storage,
    *,
    commits: CommitSignal,
    heartbeat: float,
    allowance: float = AHEAD_ALLOWANCE,
) -> APIRouter:
    """The stream route over `storage`, woken by `commits` (501 without a feed journal).

    A stream ends once its token no longer admits it (revoked). An alarm's `active` is judged
    with `allowance` (the config's `ingest.ahead_allowance`).
    """
    router = APIRouter()

    @router.get(
        "/v1/stream",
        response_class=EventSourceResponse,
        responses={
            200: {
                "content": {"text/event-stream": {}},
                "description": "server-sent events: `event:` reading|alarm|gap|status, `data:`"
                " the item as its list endpoint shows it (status: StatusOut; an alarm's"
                " `active` as the collector that wrote the event judged it then, whichever"
                " collector serves it, and an alarm"
                " raised ahead of the collector's clock gets one more event, active, once that"
                " clock comes within `ingest.ahead_allowance` of its raise), `id:` the"
                " position to resume after with Last-Event-ID (also once a client that took"
                " nothing for `api.limits.send_timeout`, 30 s, was disconnected)",
            },
            501: {"description": "this storage backend has no live feed yet"},
        },
    )
    async def stream(
        *,
        request: Request,
        scope: Auth,
        zone: Zone,
        gateway: Annotated[str | None, Query(description="one gateway's events only")] = None,
        point: Annotated[
            str | None,
            Query(description="events naming this point only (readings, alarms, gap records)"),
        ] = None,
        types: Annotated[
            str | None,
            Query(description=f"comma-separated: {KIND_NAMES} (default: all)"),
        ] = None,
        last_event_id: Annotated[
            str | None,
            Header(alias="Last-Event-ID", description="resume after this event's `id:`"),
        ] = None,
    ) -> EventSourceResponse:
        """Live events in scope, resumable with Last-Event-ID (also after a stall cut it off).

        A client that takes nothing for `api.limits.send_timeout` is disconnected.
        """
        try:
            kinds = parse_kinds(types)
        except ValueError as exc:
            raise bad_request(str(exc)) from None
        if not isinstance(storage, FeedJournal):
            raise HTTPException(
                status.HTTP_501_NOT_IMPLEMENTED, "this storage backend has no live feed yet"
            )
        head = await storage.feed_head()
        start = head
        if last_event_id is not None:
            try:
                start = parse_position(last_event_id)
            except PositionError as exc:
                raise bad_request(str(exc)) from None
            # Past the head is still ours when retention deleted the rows it names.
            if start.ahead_of(head) and start.ahead_of(await storage.feed_issued()):
                raise bad_request(
                    f"Last-Event-ID {last_event_id} is ahead of this collector's feed"
                    f" ({head.token}): it was not made by this database"
                )
        where = FeedFilter(gateway=gateway, point=point, kinds=kinds)
        presented = presented_token(request.headers.get("authorization"))
        tokens = token_check(request)

        async def admitted() -> bool:
            return presented is not None and await tokens.caller(presented.secret) is not None

        return EventSourceResponse(
            _events(
                feed=storage,
                commits=commits,
                scope=scope,
                where=where,
                start=start,
                zone=zone,
                heartbeat=heartbeat,
                allowance=allowance,
                admitted=admitted,
            ),
            ping=heartbeat,
        )

    return router
