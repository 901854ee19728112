"""RFC 9457 problem documents: how the API answers every error, in routes and middleware."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final

import structlog
from fastapi.responses import JSONResponse

from collector.api.models import Problem
from collector.storage.base import StorageError

PROBLEM_JSON: Final = "application/problem+json"
UNAVAILABLE_RETRY_AFTER: Final = 5
"""Seconds a 503 of a failed database read asks a client to wait (its Retry-After)."""

log = structlog.get_logger("collector.api")


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


def storage_unavailable(path: str, exc: StorageError) -> JSONResponse:
    """The 503 of a request whose database read failed, in a route or in the middleware."""
    # A database that failed a read (locked, gone, restarting) is unavailable, not a fault
    # of this request: 503, as /healthz says it. The error names the database: logged only.
    # Retry-After as a 429 has: a client (the status page's stream too, which EventSource
    # gives up on at a 503) knows to come back rather than when to give up.
    log.warning("api_storage_failed", path=path, error=str(exc))
    return unavailable()


def unavailable() -> JSONResponse:
    """The 503 answer of a failed database read, for a caller that logs the failure itself."""
    return problem(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "the database did not answer the read",
        {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)},
    )


def document_problem_media_type(openapi: dict[str, Any]) -> None:
    """Say in an OpenAPI document that errors come as application/problem+json.

    FastAPI documents a response `model` under application/json only; the API answers every
    error (4xx, 5xx) as PROBLEM_JSON, and clients (and schema checks) go by what is documented.
    Changes `openapi` in place; a second call changes nothing.
    """
    for path_item in openapi.get("paths", {}).values():
        for operation in path_item.values():
            for code, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if code[:1] in {"4", "5"} and "application/json" in content:
                    content[PROBLEM_JSON] = content.pop("application/json")
