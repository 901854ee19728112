"""Query strings the API refuses whole: those holding a NUL character.

No stored name or value holds a NUL, and PostgreSQL refuses one in text outright ("invalid
byte sequence for encoding UTF8: 0x00"), so a filter holding one reached the database and
answered 500 (found by fuzzing). It is refused here, for every route and parameter alike,
before any route reads its parameters.

(No `from __future__ import annotations` here: FastAPI reads the signatures at runtime.)
"""

from fastapi import Request

from collector.api.deps import bad_request

NUL = "\x00"


def refuse_nul_in_query(request: Request) -> None:
    """A dependency of every route: 400 when a query parameter's name or value holds NUL."""
    for name, value in request.query_params.multi_items():
        if NUL in name or NUL in value:
            raise bad_request(f"query parameter {name!r} holds a NUL character")
