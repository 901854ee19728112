"""The collector's HTTP API: FastAPI over the Storage protocol, bearer tokens scoped by district.

`create_app` builds the app from one router per resource (collector/api/routes/) and turns
every error into an RFC 9457 problem.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, timezone
from typing import Any, Final

from fastapi import Depends, FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from collector.api.admission import Admission
from collector.api.core import ApiToken
from collector.api.docs import add_offline_docs, document_head_without_content, is_docs_path
from collector.api.limits import RateLimits, RequestLimits
from collector.api.models import Problem
from collector.api.problems import (
    PROBLEM_JSON,
    document_problem_media_type,
    problem,
    storage_unavailable,
)
from collector.api.query_text import refuse_nul_in_query
from collector.api.routes import (
    alarms,
    gaps,
    gateways,
    health,
    latest,
    metrics,
    points,
    quality,
    readings,
    stream,
    verify,
)
from collector.api.sizes import RequestSizeLimit
from collector.api.status_page import add_status_page, is_status_page_path
from collector.api.tokens import TokenCheck
from collector.feed.wakeup import CommitSignal, LocalCommitSignal
from collector.metrics import CollectorMetrics
from collector.model import AHEAD_ALLOWANCE
from collector.storage.base import Storage, StorageError

_PROBLEM_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    code: {"model": Problem, "description": f"{description} (RFC 9457 {PROBLEM_JSON})"}
    for code, description in (
        (400, "a query parameter is not valid"),
        (401, "no valid bearer token"),
        (413, "the request carries a body longer than `api.limits.body_bytes`"),
        (414, "the URL is longer than `api.limits.url_bytes`"),
        (422, "a query parameter is out of its range or of the wrong type"),
        (429, "over the token's (or, without a valid token, the address's) rate: see Retry-After"),
        (431, "more headers, or longer ones, than `api.limits` allows"),
        (503, "the database did not answer the read (`api_storage_failed`): see Retry-After"),
    )
}


def _validation_detail(exc: RequestValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', 'invalid')}"
        for error in exc.errors()
    )


async def _http_problem(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):
        raise exc
    return problem(exc.status_code, str(exc.detail), exc.headers)


async def _storage_problem(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StorageError):
        raise exc
    return storage_unavailable(request.url.path, exc)


async def _validation_problem(_request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):
        raise exc
    return problem(status.HTTP_422_UNPROCESSABLE_CONTENT, _validation_detail(exc))


def _is_browser_page(path: str) -> bool:
    """A page a browser opens with a token as its Basic password: the docs, the status page."""
    return is_docs_path(path) or is_status_page_path(path)


def create_app(
    storage: Storage,
    tokens: Sequence[ApiToken],
    *,
    offline_after: float = 60.0,
    clock: Callable[[], float] = time.time,
    display_zone: timezone = UTC,
    commits: CommitSignal | None = None,
    stream_heartbeat: float = 15.0,
    request_limits: RequestLimits = RequestLimits(),  # noqa: B008 - frozen, shared safely
    rate_limits: RateLimits | None = None,
    rate_clock: Callable[[], float] = time.monotonic,
    collector_metrics: CollectorMetrics | None = None,
    ahead_allowance: float = AHEAD_ALLOWANCE,
) -> FastAPI:
    """Build the API over `storage`; every route but /healthz needs one of `tokens`.

    Times are shown at `display_zone` (the config's `api.tz`) unless a request says `?tz=`.
    `/v1/stream` wakes on `commits` (the ingest loop's; without one, streams only re-read the
    database every `stream_heartbeat` seconds, when they also ping). Requests over
    `request_limits` get 413 or 414; with `rate_limits` (the config's `api.rate_limit`; None:
    no limit) requests beyond a token's or an address's bucket, read on `rate_clock`, get 429.
    `/metrics` serves `collector_metrics` (the ingest loop's counters; without one, only the
    gauges read from the database move). An alarm raised by an event stamped past
    `ahead_allowance` (the config's `ingest.ahead_allowance`) is active once `clock` reaches it.
    """
    app = FastAPI(
        title="Ganzhi collector",
        version="1",
        description="Readings, gateways and ingest progress of the province collector."
        f" Errors are RFC 9457 {PROBLEM_JSON}.",
        responses=_PROBLEM_RESPONSES,
        docs_url=None,  # add_offline_docs serves /docs without a CDN
        redoc_url=None,  # ReDoc would load from a CDN
        dependencies=[Depends(refuse_nul_in_query)],
    )
    app.state.display_zone = display_zone

    def openapi() -> dict[str, Any]:
        schema = FastAPI.openapi(app)  # built once, then cached by FastAPI
        document_problem_media_type(schema)
        document_head_without_content(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
    add_offline_docs(app)
    add_status_page(app)
    app.add_exception_handler(StarletteHTTPException, _http_problem)
    app.add_exception_handler(RequestValidationError, _validation_problem)
    app.add_exception_handler(StorageError, _storage_problem)
    # Config tokens, then the database's (`collector tokens`), looked up on every request;
    # the routes find them here (`deps.caller_scope`).
    check = TokenCheck(tokens, storage)
    app.state.token_check = check

    async def identify(secret: str) -> str | None:
        caller = await check.caller(secret)
        return None if caller is None else caller.name

    # The last added runs first: sizes are checked before anything else.
    app.add_middleware(
        Admission,
        identify=identify,
        is_docs_path=_is_browser_page,
        rate_limits=rate_limits,
        clock=rate_clock,
    )
    app.add_middleware(RequestSizeLimit, limits=request_limits)
    app.include_router(health.create_router(storage))
    app.include_router(gateways.create_router(storage, offline_after=offline_after, clock=clock))
    app.include_router(points.create_router(storage))
    app.include_router(latest.create_router(storage))
    app.include_router(readings.create_router(storage))
    app.include_router(alarms.create_router(storage, clock=clock, allowance=ahead_allowance))
    app.include_router(gaps.create_router(storage))
    app.include_router(verify.create_router(storage))
    app.include_router(quality.create_router(storage, clock=clock))
    app.include_router(
        metrics.create_router(
            storage,
            CollectorMetrics(offline_after=offline_after)
            if collector_metrics is None
            else collector_metrics,
            clock=clock,
        )
    )
    app.include_router(
        stream.create_router(
            storage,
            commits=LocalCommitSignal() if commits is None else commits,
            heartbeat=stream_heartbeat,
            allowance=ahead_allowance,
        )
    )
    return app
