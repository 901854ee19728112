"""`GET /v1/readings`: stored readings, raw or per time bucket, as JSON pages or one CSV stream.

(No `from __future__ import annotations` here: FastAPI reads the signatures at runtime.)
"""

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timezone
from typing import Annotated, Any, Final, TypeVar

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from collector.api.core import (
    CSV_MEDIA_TYPE,
    CursorError,
    EveryError,
    decode_cursor,
    grid_offset,
    parse_every,
    shown_time,
    shown_value,
    wants_csv,
)
from collector.api.csv_rows import (
    BUCKET_COLUMNS,
    READING_COLUMNS,
    bucket_cells,
    csv_text,
    reading_cells,
)
from collector.api.deps import (
    DEFAULT_LIMIT,
    Auth,
    Cursor,
    From,
    Limit,
    To,
    Zone,
    bad_request,
    cursor_position,
    next_cursor,
    time_range,
)
from collector.api.models import BucketOut, ListPage, ReadingOut
from collector.readmodel import (
    BucketAfter,
    BucketGrid,
    BucketRow,
    Page,
    ReadingAfter,
    ReadingFilter,
    ReadingRow,
    pages,
)
from collector.storage.base import Storage

RowT = TypeVar("RowT")
AfterT = TypeVar("AfterT")

CSV_PAGE: Final = 5000
"""Rows read from storage per step while a CSV streams: memory stays one page."""

_DESCRIPTION: Final = """\
Readings ordered by (gateway, point, t), or with `every` one aggregate per (gateway, point,
bucket, quota, unit), ordered so; the database computes them (from per-minute rollups when the
buckets and `from`/`to` fall on whole minutes: the same buckets, `avg` to within float rounding).

**Buckets** (`every=1m`, `5m`, `15m`, `1h`, `1d`; any `<n>s|m|h|d` from 1 s to 31 d): `t` is
the bucket's start. Buckets are multiples of the width since the epoch in UTC, except whole
days (`1d`, `7d`, ...), which start at midnight of the shown offset (`tz`): with
`tz=+08:00`, a day is a Beijing day. `from`/`to` pick readings, so edge buckets may be
partial. `min`, `max`, `avg`, `last` and `count` cover the readings with a value whose
quality is not bad; a bucket of only such readings shows nulls and count 0. `avg` is a float
sum over `count`: for finite sums, within (count + 1) x 2^-53 x the mean magnitude of the
values of their exact mean (sums past the largest double may give a null `avg`, from the
rollups or the readings alone, or both), so the last digits may differ between a whole-minute
`from` (answered from the rollups) and another (from the readings), and readings that cancel
(1e16, 1, -1e16) may lose the small ones; `count`, `min`, `max` and `last` are exact. A reading
flagged `ahead_of_collector` (stamped past the collector's clock) is in no bucket. A
bucket never aggregates values of two quotas or units: where a point changed quota or unit
within one (a site map re-purposing it), that bucket has one item per (quota, unit), ordered
by quota then unit (byte order); `next` resumes between them.

**CSV** (`Accept: text/csv`): the same items, one row each, as one UTF-8 RFC 4180 stream
with a header row (flags joined by `;`, an unknown value as an empty cell). It carries every
row of the filter: `limit` is ignored and there is no `next`; a `cursor` from a JSON page
starts the stream after that page.
"""

_CSV_RESPONSE: Final[dict[int | str, dict[str, Any]]] = {
    200: {
        "description": "A page of readings or buckets (JSON), or all of them as CSV.",
        "content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}},
    }
}


def reading_out(row: ReadingRow, zone: timezone) -> ReadingOut:
    """A stored reading as the API shows it (here and in /v1/latest)."""
    return ReadingOut.model_validate(
        {
            "gateway": row.gateway,
            "point": row.point,
            "quota": row.quota,
            "t": shown_time(row.t, zone),
            "value": shown_value(row.value),
            "unit": row.unit,
            "quality": row.quality,
            "flags": list(row.flags),
        }
    )


def bucket_out(row: BucketRow, zone: timezone) -> BucketOut:
    """One bucket as the API shows it."""
    return BucketOut(
        gateway=row.gateway,
        point=row.point,
        quota=row.quota,
        unit=row.unit,
        t=shown_time(row.t, zone),
        min=shown_value(row.min),
        max=shown_value(row.max),
        avg=shown_value(row.avg),
        last=shown_value(row.last),
        count=row.count,
    )


def _reading_after(cursor: str | None) -> ReadingAfter | None:
    position = cursor_position("readings", cursor, (str, str, float, int))
    if position is None:
        return None
    return (str(position[0]), str(position[1]), float(position[2]), int(position[3]))


_BUCKET_CURSOR: Final = (str, str, float, str, str, int, int)
"""A bucket cursor: gateway, point, bucket start, quota, unit, width, offset."""
_OLD_BUCKET_CURSOR: Final = (str, str, float, int, int)
"""One made before a bucket had a row per (quota, unit): it resumes after the whole bucket."""


def _bucket_after(cursor: str | None, grid: BucketGrid) -> BucketAfter | None:
    if cursor is None:
        return None
    try:
        position = decode_cursor("buckets", cursor, _BUCKET_CURSOR)
        label: tuple[str, str] | None = (str(position[3]), str(position[4]))
        width, offset = position[5], position[6]
    except CursorError:
        old = cursor_position("buckets", cursor, _OLD_BUCKET_CURSOR)
        if old is None:  # not reached: a cursor was given
            return None
        position, label, (width, offset) = old, None, (old[3], old[4])
    if (width, offset) != (grid.width, grid.offset):
        raise bad_request("cursor was made for another every= (or day start, tz=)")
    return (str(position[0]), str(position[1]), float(position[2]), label)


def _grid(every: str, zone: timezone) -> BucketGrid:
    try:
        width = parse_every(every)
    except EveryError as exc:
        raise bad_request(str(exc)) from None
    return BucketGrid(width, grid_offset(width, zone))


async def _csv_response(
    columns: Sequence[str],
    fetch: Callable[[AfterT | None], Awaitable[Page[RowT]]],
    after: AfterT | None,
    position: Callable[[RowT], AfterT],
    cells: Callable[[RowT], list[str]],
) -> StreamingResponse:
    """The header, then one chunk of rows per storage page until the filter is exhausted.

    The first page is read here, before the response starts: a database failing it raises
    StorageError while a 503 problem can still be answered. Once the 200 headers are sent a
    failed read can only cut the transfer.
    """
    first = await fetch(after)
    return StreamingResponse(
        _csv_chunks(columns, first, fetch, position, cells),
        media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
    )


async def _csv_chunks(
    columns: Sequence[str],
    first: Page[RowT],
    fetch: Callable[[AfterT | None], Awaitable[Page[RowT]]],
    position: Callable[[RowT], AfterT],
    cells: Callable[[RowT], list[str]],
) -> AsyncIterator[str]:
    yield csv_text([columns])
    if first.items:
        yield csv_text(cells(row) for row in first.items)
    if not first.more or not first.items:
        return
    async for page in pages(fetch, position, position(first.items[-1])):
        if page.items:
            yield csv_text(cells(row) for row in page.items)


def _bucket_key(row: BucketRow) -> BucketAfter:
    return (row.gateway, row.point, row.t, (row.quota, row.unit))


def create_router(storage: Storage) -> APIRouter:
    """The readings route over `storage`."""
    router = APIRouter()

    @router.get(
        "/v1/readings",
        description=_DESCRIPTION,
        response_model=ListPage[ReadingOut] | ListPage[BucketOut],
        responses=_CSV_RESPONSE,
    )
    async def readings(
        *,
        scope: Auth,
        zone: Zone,
        point: str | None = None,
        gateway: str | None = None,
        from_: From = None,
        to: To = None,
        every: Annotated[
            str | None,
            Query(
                description="bucket width `<n>s|m|h|d` (1m, 5m, 15m, 1h, 1d; 1 s to 31 d):"
                " one aggregate per (gateway, point, bucket, quota, unit) instead of raw readings"
            ),
        ] = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
        accept: Annotated[str | None, Header(description="text/csv: stream CSV")] = None,
    ) -> ListPage[ReadingOut] | ListPage[BucketOut] | StreamingResponse:
        # Every parameter is checked before a CSV stream starts: a bad one is still a problem
        # document, never a cut stream.
        t_from, t_to = time_range(from_, to)
        where = ReadingFilter(gateway=gateway, point=point, t_from=t_from, t_to=t_to)
        csv = wants_csv(accept)
        if every is None:
            after = _reading_after(cursor)
            if csv:
                return await _csv_response(
                    READING_COLUMNS,
                    lambda at: storage.readings(scope, where, after=at, limit=CSV_PAGE),
                    after,
                    lambda row: row.position,
                    lambda row: reading_cells(row, zone),
                )
            found = await storage.readings(scope, where, after=after, limit=limit)
            return ListPage[ReadingOut](
                items=[reading_out(row, zone) for row in found.items],
                next=next_cursor("readings", found, lambda row: row.position),
            )
        grid = _grid(every, zone)
        since = _bucket_after(cursor, grid)
        if csv:
            return await _csv_response(
                BUCKET_COLUMNS,
                lambda at: storage.buckets(scope, where, grid, after=at, limit=CSV_PAGE),
                since,
                _bucket_key,
                lambda row: bucket_cells(row, zone),
            )
        buckets = await storage.buckets(scope, where, grid, after=since, limit=limit)
        return ListPage[BucketOut](
            items=[bucket_out(row, zone) for row in buckets.items],
            next=next_cursor(
                "buckets",
                buckets,
                lambda row: (
                    row.gateway,
                    row.point,
                    row.t,
                    row.quota,
                    row.unit,
                    grid.width,
                    grid.offset,
                ),
            ),
        )

    return router
