"""The collector's HTTP API: FastAPI over the Storage protocol, bearer tokens scoped by district.

(No `from __future__ import annotations` here: FastAPI reads the route signatures at runtime.)
"""

import time
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from typing import Annotated, Any, Final, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from collector.api.core import (
    ApiToken,
    CursorError,
    decode_cursor,
    encode_cursor,
    find_token,
    is_online,
    last_seen,
)
from collector.api.models import (
    AlarmOut,
    GapOut,
    GatewayOut,
    Health,
    ListPage,
    PointOut,
    Problem,
    ReadingOut,
)
from collector.model import (
    AlarmAfter,
    AlarmFilter,
    AlarmState,
    GapAfter,
    GapRow,
    GapState,
    GatewayView,
    Page,
    PointAfter,
    ReadingAfter,
    ReadingFilter,
    ReadingRow,
    Scope,
)
from collector.storage.base import Storage
from specs.records import RecordFormatError, iso_time, parse_iso_time

T = TypeVar("T")

DEFAULT_LIMIT: Final = 1000
MAX_LIMIT: Final = 10_000
PROBLEM_JSON: Final = "application/problem+json"
_PROBLEM_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    code: {"model": Problem, "description": f"{description} (RFC 9457 {PROBLEM_JSON})"}
    for code, description in (
        (400, "a query parameter is not valid"),
        (401, "no valid bearer token"),
        (422, "a query parameter is out of its range or of the wrong type"),
    )
}

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")]
Cursor = Annotated[str | None, Query(description="`next` of the previous page")]
From = Annotated[str | None, Query(alias="from", description="ISO 8601 with offset, inclusive")]
To = Annotated[str | None, Query(description="ISO 8601 with offset, exclusive")]


def _optional_time(t: float | None) -> str | None:
    return None if t is None else iso_time(t)


def _alarm(state: AlarmState) -> AlarmOut:
    return AlarmOut(
        gateway=state.gateway,
        alarm_id=state.alarm_id,
        point=state.point,
        quota=state.quota,
        level=state.level,
        raised_at=_optional_time(state.raised_at),
        cleared_at=_optional_time(state.cleared_at),
        value=state.value,
        threshold=state.threshold,
        unit=state.unit,
        trigger_t=iso_time(state.trigger_t),
    )


def _reading(row: ReadingRow) -> ReadingOut:
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


def _bad_request(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_400_BAD_REQUEST, detail)


def _time(name: str, text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_iso_time(text)
    except RecordFormatError as exc:
        raise _bad_request(f"{name}: {exc}") from None


def _after(
    kind: str, cursor: str | None, shape: Sequence[type]
) -> tuple[str | int | float, ...] | None:
    if cursor is None:
        return None
    try:
        return decode_cursor(kind, cursor, shape)
    except CursorError as exc:
        raise _bad_request(str(exc)) from None


def _point_after(kind: str, cursor: str | None) -> PointAfter | None:
    position = _after(kind, cursor, (str, str))
    return None if position is None else (str(position[0]), str(position[1]))


def _reading_after(cursor: str | None) -> ReadingAfter | None:
    position = _after("readings", cursor, (str, str, float, int))
    if position is None:
        return None
    return (str(position[0]), str(position[1]), float(position[2]), int(position[3]))


def _alarm_after(cursor: str | None) -> AlarmAfter | None:
    position = _after("alarms", cursor, (float, str, str))
    return None if position is None else (float(position[0]), str(position[1]), str(position[2]))


def _gap_after(cursor: str | None) -> GapAfter | None:
    position = _after("gaps", cursor, (str, int))
    return None if position is None else (str(position[0]), int(position[1]))


def _gap(row: GapRow) -> GapOut:
    return GapOut(
        gateway=row.gateway,
        epoch=row.epoch,
        from_seq=row.from_seq,
        to_seq=row.to_seq,
        t_from=_optional_time(row.t_from),
        t_to=_optional_time(row.t_to),
        lost=row.lost,
        reason=row.reason,
        state=row.state.value,
    )


def problem(
    status_code: int, detail: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An RFC 9457 problem response (`type` about:blank: the status says what kind it is)."""
    try:
        title = HTTPStatus(status_code).phrase
    except ValueError:
        title = "Error"
    body = Problem(type="about:blank", title=title, status=status_code, detail=detail)
    return JSONResponse(
        body.model_dump(), status_code=status_code, headers=headers, media_type=PROBLEM_JSON
    )


def _validation_detail(exc: RequestValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', 'invalid')}"
        for error in exc.errors()
    )


async def _http_problem(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):
        raise exc
    return problem(exc.status_code, str(exc.detail), exc.headers)


async def _validation_problem(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):
        raise exc
    return problem(status.HTTP_422_UNPROCESSABLE_CONTENT, _validation_detail(exc))


def _next(kind: str, page: Page[T], key: Callable[[T], Sequence[str | int | float]]) -> str | None:
    return encode_cursor(kind, key(page.items[-1])) if page.more and page.items else None


def _gateway(view: GatewayView, now: float, offline_after: float) -> GatewayOut:
    seen = last_seen(view)
    return GatewayOut(
        gateway=view.gateway,
        enterprise=view.enterprise,
        district=view.district,
        online=is_online(view, now, offline_after),
        last_seen=None if seen is None else iso_time(seen),
        epoch=view.epoch,
        acked_through=view.acked_through,
        gaps=view.gaps,
    )


def create_app(
    storage: Storage,
    tokens: Sequence[ApiToken],
    *,
    offline_after: float = 60.0,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """Build the API over `storage`; every route but /healthz needs one of `tokens`."""
    app = FastAPI(
        title="Ganzhi collector",
        version="1",
        description="Readings, gateways and ingest progress of the province collector."
        f" Errors are RFC 9457 {PROBLEM_JSON}.",
        responses=_PROBLEM_RESPONSES,
    )
    app.add_exception_handler(StarletteHTTPException, _http_problem)
    app.add_exception_handler(RequestValidationError, _validation_problem)
    bearer = HTTPBearer(auto_error=False, description="a token from the collector config")
    known = tuple(tokens)

    def authenticate(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Scope:
        token = None if credentials is None else find_token(known, credentials.credentials)
        if token is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "a valid bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return token.scope

    Auth = Annotated[Scope, Depends(authenticate)]  # noqa: N806 - a type alias, not a value

    @app.get("/healthz")
    async def healthz() -> Health:
        await storage.ping()
        return Health(status="ok")

    @app.get("/v1/gateways")
    async def gateways(
        *, scope: Auth, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
    ) -> ListPage[GatewayOut]:
        position = _after("gateways", cursor, (str,))
        after = None if position is None else (str(position[0]),)
        page = await storage.gateway_views(scope, after=after, limit=limit)
        now = clock()
        return ListPage[GatewayOut](
            items=[_gateway(view, now, offline_after) for view in page.items],
            next=_next("gateways", page, lambda v: (v.gateway,)),
        )

    @app.get("/v1/points")
    async def points(
        *,
        scope: Auth,
        gateway: str | None = None,
        quota: str | None = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> ListPage[PointOut]:
        page = await storage.points(
            scope,
            gateway=gateway,
            quota=quota,
            after=_point_after("points", cursor),
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
            next=_next("points", page, lambda p: (p.gateway, p.point)),
        )

    @app.get("/v1/latest")
    async def latest(
        *,
        scope: Auth,
        enterprise: str | None = None,
        gateway: str | None = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> ListPage[ReadingOut]:
        page = await storage.latest(
            scope,
            enterprise=enterprise,
            gateway=gateway,
            after=_point_after("latest", cursor),
            limit=limit,
        )
        return ListPage[ReadingOut](
            items=[_reading(r) for r in page.items],
            next=_next("latest", page, lambda r: (r.gateway, r.point)),
        )

    @app.get("/v1/readings")
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
            raise _bad_request("every= (downsampling) is not supported yet")
        after = _reading_after(cursor)
        where = ReadingFilter(
            gateway=gateway, point=point, t_from=_time("from", from_), t_to=_time("to", to)
        )
        page = await storage.readings(scope, where, after=after, limit=limit)
        return ListPage[ReadingOut](
            items=[_reading(r) for r in page.items],
            next=_next("readings", page, lambda r: (r.gateway, r.point, r.t, r.rowid)),
        )

    @app.get("/v1/alarms")
    async def alarms(
        *,
        scope: Auth,
        active: Annotated[
            bool | None, Query(description="true: raised and not cleared; false: the others")
        ] = None,
        gateway: str | None = None,
        from_: From = None,
        to: To = None,
        limit: Limit = DEFAULT_LIMIT,
        cursor: Cursor = None,
    ) -> ListPage[AlarmOut]:
        """Alarms whose span [raised_at, cleared_at) meets [from, to), oldest first."""
        after = _alarm_after(cursor)
        where = AlarmFilter(
            gateway=gateway, active=active, t_from=_time("from", from_), t_to=_time("to", to)
        )
        page = await storage.alarms(scope, where, after=after, limit=limit)
        return ListPage[AlarmOut](
            items=[_alarm(a) for a in page.items],
            next=_next("alarms", page, lambda a: (a.since, a.gateway, a.alarm_id)),
        )

    _gap_routes(app, storage, authenticate)
    return app


def _gap_routes(app: FastAPI, storage: Storage, authenticate: Callable[..., Scope]) -> None:
    """Add `GET /v1/gaps` (apart, so that create_app stays readable)."""
    Auth = Annotated[Scope, Depends(authenticate)]  # noqa: N806 - a type alias, not a value

    @app.get("/v1/gaps")
    async def gaps(
        *,
        scope: Auth,
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
            items=[_gap(row) for row in page.items],
            next=_next("gaps", page, lambda row: (row.gateway, row.rowid)),
        )
