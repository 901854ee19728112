"""Who may ask at all, and how often: the middleware in front of every route.

Every request but `GET /healthz` needs a valid token (DESIGN section 8), whatever its path:
the docs, `/openapi.json`, unknown paths and any route added later included, so that nothing
is open by an omission. The routes still take their scope from `deps.caller_scope`;
this gate only decides whether the request goes on. On the browser pages (the docs,
`docs.is_docs_path`, and the status page at `/`, `status_page.is_status_page_path`) a token is
also read as an HTTP Basic password, and a refusal asks for one: that is how a browser, which
cannot send a bearer header with a page load, opens them (the operator types any user name and
a token as the password; the browser then sends both with the page's own requests).
Elsewhere Basic is taken only from a request the browser marks `Sec-Fetch-Site: same-origin`:
the status page's reads of `/v1` and its event stream (EventSource cannot send a bearer header
at all). A page of another site cannot make the browser send the operator's Basic credentials
there (its requests are marked cross-site), and a program that can set the header holds the
token anyway and may as well send it as a bearer.

Rate limits (`RateLimits`, the config's `api.rate_limit`): a request with a valid token takes
from its token's bucket; any other (no token, a wrong one, `/healthz`) from its client
address's bucket, so that guessing tokens is as slow as the address's rate. An empty bucket
answers 429 with `Retry-After`. A token the database cannot be asked about (its read failed)
answers 503, as a route's failed read does (`problems.storage_unavailable`), after taking
from the address's bucket as a wrong token would (so guessing stays slow with the database
down), and its `api_storage_failed` line is written once a minute per path at most
(hostkit.log_limit; `api_storage_failures_unlogged` counts the rest).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import structlog
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from collector.api.credentials import Scheme, is_same_origin, presented_token
from collector.api.limits import RateLimits
from collector.api.problems import problem, unavailable
from collector.api.ratelimit import RateLimiter, client_key
from collector.storage.base import StorageError
from hostkit.log_limit import LineLimit, warn_limited

OPEN_PATHS: Final = frozenset({"/healthz"})
BEARER_CHALLENGE: Final = "Bearer"
BASIC_CHALLENGE: Final = (
    'Basic realm="Ganzhi collector API (password: an API token)", charset="UTF-8"'
)

log = structlog.get_logger("collector.api")

MAX_TOKEN_BUCKETS: Final = 100_000
"""Far above any config's token count: the table never drops a token's bucket."""

Identify = Callable[[str], Awaitable[str | None]]
"""The name of the token whose secret is given, or None when no token has it (async: a
token store may have to ask the database)."""


class Admission:
    """ASGI middleware: a valid token or 401 (but for OPEN_PATHS), then the rate limits."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        identify: Identify,
        is_docs_path: Callable[[str], bool],  # any browser page: docs and the status page
        rate_limits: RateLimits | None,
        clock: Callable[[], float],
    ) -> None:
        self._app = app
        self._identify = identify
        self._is_docs_path = is_docs_path
        self._rate_limits = rate_limits
        # One bucket per valid token (there are only as many as the config names), and per
        # client address up to max_addresses.
        self._per_token = RateLimiter(MAX_TOKEN_BUCKETS, clock)
        self._per_address = RateLimiter(
            1 if rate_limits is None else rate_limits.max_addresses, clock
        )
        self._failures = LineLimit()  # failed token lookups: anyone can make them, fast

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 401 or 429 here, or pass the request on."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = Headers(scope=scope)
        docs = self._is_docs_path(path)
        presented = presented_token(headers.get("authorization"))
        name = None
        if presented is not None and (
            presented.scheme is Scheme.BEARER
            or docs
            or is_same_origin(headers.get("sec-fetch-site"))
        ):
            try:
                name = await self._identify(presented.secret)
            except StorageError as exc:
                # Out here the app's exception handlers do not reach: answered as they would,
                # after taking from the address's bucket as a wrong token does. Otherwise,
                # with the database down, guesses would go unthrottled (a right config token,
                # checked before the database, answering 200 among the 503s), each a warning.
                refusal = self._over_rate(scope, None)
                if refusal is None:
                    warn_limited(
                        log,
                        self._failures,
                        path,
                        "api_storage_failed",
                        "api_storage_failures_unlogged",
                        path=path,
                        error=str(exc),
                    )
                    refusal = unavailable()
                await refusal(scope, receive, send)
                return
        refusal = self._over_rate(scope, name)
        if refusal is None and name is None and path not in OPEN_PATHS:
            refusal = problem(
                401,
                "a valid token is required: Authorization: Bearer <token>, or from a browser"
                " a token as the password (any user name)"
                if docs
                else "a valid bearer token is required",
                headers={"WWW-Authenticate": BASIC_CHALLENGE if docs else BEARER_CHALLENGE},
            )
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self._app(scope, receive, send)

    def _over_rate(self, scope: Scope, token_name: str | None) -> JSONResponse | None:
        if self._rate_limits is None:
            return None
        if token_name is not None:
            rule = self._rate_limits.token
            verdict = self._per_token.take(token_name, rule)
        else:
            client = scope.get("client")
            host = "unknown" if client is None else str(client[0])
            rule = self._rate_limits.address
            verdict = self._per_address.take(client_key(host), rule)
        if verdict.allowed:
            return None
        return problem(
            429,
            f"too many requests: at most {rule.burst} at once, then {rule.per_second:g} per"
            " second" + ("" if token_name is not None else " from one address without a token"),
            headers={"Retry-After": verdict.retry_after_header},
        )
