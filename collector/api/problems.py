"""RFC 9457 problem documents: how the API answers every error, in routes and middleware."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Final

from fastapi.responses import JSONResponse

from collector.api.models import Problem

PROBLEM_JSON: Final = "application/problem+json"


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
