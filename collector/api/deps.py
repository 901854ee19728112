"""What every API route shares: the bearer-token scope, paging by cursor, and time parameters.

Times are shown at the offset `?tz=` names, else at the app's default (`api.tz` in the
collector config), which `create_app` keeps in `app.state.display_zone`; the tokens a route
admits (`Auth`) are the app's `TokenCheck`, kept in `app.state.token_check`.

(No `from __future__ import annotations` here: FastAPI reads the signatures at runtime.)
"""

from collections.abc import Callable, Sequence
from datetime import UTC, timezone
from typing import Annotated, Final, TypeVar

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from collector.api.core import (
    CursorError,
    OffsetError,
    decode_cursor,
    encode_cursor,
    parse_utc_offset,
)
from collector.api.credentials import presented_token
from collector.api.tokens import TokenCheck
from collector.readmodel import Page, PointAfter, Scope
from specs.records import RecordFormatError, parse_iso_time

T = TypeVar("T")

DEFAULT_LIMIT: Final = 1000
MAX_LIMIT: Final = 10_000

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")]
Cursor = Annotated[str | None, Query(description="`next` of the previous page")]
From = Annotated[str | None, Query(alias="from", description="ISO 8601 with offset, inclusive")]
To = Annotated[
    str | None, Query(description="ISO 8601 with offset, exclusive; later than `from` (else 400)")
]


def token_check(request: Request) -> TokenCheck:
    """The tokens the app admits: `create_app` keeps them in `app.state.token_check`."""
    check = getattr(request.app.state, "token_check", None)
    if not isinstance(check, TokenCheck):
        raise TypeError("app.state.token_check is not a TokenCheck: build the app with create_app")
    return check


_bearer = HTTPBearer(
    auto_error=False,
    description="a token from the collector config or from `collector tokens add`",
)


async def caller_scope(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Scope:
    """What the caller may see: a valid token's scope, else a 401.

    A bearer token, or one the admission middleware let through as a Basic password (the
    status page's own requests, `collector.api.admission`): it has decided who may ask how.
    """
    if credentials is not None:
        secret: str | None = credentials.credentials
    else:  # `_bearer` documents the scheme in OpenAPI; Basic is read from the header here
        presented = presented_token(request.headers.get("authorization"))
        secret = None if presented is None else presented.secret
    caller = None if secret is None else await token_check(request).caller(secret)
    if caller is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a valid bearer token is required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return caller.scope


Auth = Annotated[Scope, Depends(caller_scope)]
"""A route parameter: the scope of the caller's token (a 401 without a valid one)."""


def bad_request(detail: str) -> HTTPException:
    """A 400 for a query parameter that is not valid (the handlers make it a problem)."""
    return HTTPException(status.HTTP_400_BAD_REQUEST, detail)


def parse_time(name: str, text: str | None) -> float | None:
    """The time in query parameter `name` (ISO 8601 with offset), or a 400."""
    if text is None:
        return None
    try:
        return parse_iso_time(text)
    except RecordFormatError as exc:
        raise bad_request(f"{name}: {exc}") from None


def time_range(t_from: str | None, t_to: str | None) -> tuple[float | None, float | None]:
    """Query parameters `from` and `to` as times, or a 400; a 400 too when `to` is not later.

    An empty range asked for is a mistake in the request: every route says so alike.
    """
    start, end = parse_time("from", t_from), parse_time("to", t_to)
    if start is not None and end is not None and start >= end:
        raise bad_request("to: must be later than from")
    return start, end


def cursor_position(
    kind: str, cursor: str | None, shape: Sequence[type]
) -> tuple[str | int | float, ...] | None:
    """The sort key in a cursor of list `kind` (None: the first page), or a 400."""
    if cursor is None:
        return None
    try:
        return decode_cursor(kind, cursor, shape)
    except CursorError as exc:
        raise bad_request(str(exc)) from None


def point_after(kind: str, cursor: str | None) -> PointAfter | None:
    """The (gateway, point) a page of list `kind` continues after."""
    position = cursor_position(kind, cursor, (str, str))
    return None if position is None else (str(position[0]), str(position[1]))


def next_cursor(
    kind: str, page: Page[T], key: Callable[[T], Sequence[str | int | float]]
) -> str | None:
    """The cursor for the page after `page`, or None when it is the last."""
    return encode_cursor(kind, key(page.items[-1])) if page.more and page.items else None


def display_zone(
    request: Request,
    tz: Annotated[
        str | None,
        Query(
            description="UTC offset ±HH:MM (within ±14:00) at which times are shown, such as"
            " +08:00 (%2B08:00 in a URL; a bare + that arrives as a space is read as +)."
            " Default: the collector's `api.tz`."
        ),
    ] = None,
) -> timezone:
    """The offset times are shown at: `?tz=`, else the app's default; a 400 when not valid."""
    if tz is None:
        default = getattr(request.app.state, "display_zone", UTC)
        return default if isinstance(default, timezone) else UTC
    try:
        return parse_utc_offset(tz)
    except OffsetError as exc:
        raise bad_request(str(exc)) from None


Zone = Annotated[timezone, Depends(display_zone)]
"""A route parameter: the offset its times are shown at."""
