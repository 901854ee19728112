"""Bounds on what a request may carry: URL (414), headers (431) and body (413), as problems.

Every route is a GET, so no body is ever read; a body is still bounded, so that a client cannot
make the server hold one. A declared `Content-Length` over the bound is refused at once; a
chunked body is read up to the bound (refused past it) and handed on as read.

Headers are bounded twice. The HTTP server stops buffering a request line and headers that
have not ended within `header_bytes` (uvicorn's `h11_max_incomplete_event_size`, see
`collector.api.server`; it answers a plain 400 and closes), but it only looks while they are
incomplete: a larger block that arrives whole passes it. So the app counts them too, and
answers 431 past `header_bytes` or `header_count`.
"""

from __future__ import annotations

from typing import Final

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collector.api.limits import RequestLimits
from collector.api.problems import problem

_MAX_LENGTH_DIGITS: Final = 18  # past this a Content-Length is over any bound (and int() slow)


def header_size(scope: Scope) -> tuple[int, int]:
    """How many headers a request has, and their bytes as sent (`name: value` and CRLF)."""
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    return len(headers), sum(len(name) + len(value) + 4 for name, value in headers)


def url_length(scope: Scope) -> int:
    """The bytes of the request target: the raw path, and `?query` when there is one."""
    raw_path = scope.get("raw_path") or str(scope["path"]).encode("utf-8")
    query: bytes = scope.get("query_string", b"")
    return len(raw_path) + (len(query) + 1 if query else 0)


class RequestSizeLimit:
    """ASGI middleware: 414 for a long URL, 431 for too many headers, 413 for a long body."""

    def __init__(self, app: ASGIApp, *, limits: RequestLimits) -> None:
        self._app = app
        self._url_bytes = limits.url_bytes
        self._body_bytes = limits.body_bytes
        self._header_bytes = limits.header_bytes
        self._header_count = limits.header_count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 413, 414 or 431 here, or pass the request on."""
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        if url_length(scope) > self._url_bytes:
            await problem(414, f"the URL is longer than {self._url_bytes} bytes")(
                scope, receive, send
            )
            return
        count, size = header_size(scope)
        if count > self._header_count or size > self._header_bytes:
            detail = (
                f"more than {self._header_count} headers, or more than {self._header_bytes}"
                " bytes of them"
            )
            await problem(431, detail)(scope, receive, send)
            return
        headers = Headers(scope=scope)
        declared = headers.get("content-length")
        if declared is not None:
            if self._over_declared(declared.strip()):
                await self._too_large(scope, receive, send)
                return
        elif "transfer-encoding" in headers:
            messages = await self._read_body(receive)
            if messages is None:
                await self._too_large(scope, receive, send)
                return
            receive = _replay(messages, receive)
        await self._app(scope, receive, send)

    def _over_declared(self, declared: str) -> bool:
        # The HTTP server has already refused a Content-Length that is not a number.
        if not (declared.isascii() and declared.isdigit()):
            return False
        return len(declared) > _MAX_LENGTH_DIGITS or int(declared) > self._body_bytes

    async def _read_body(self, receive: Receive) -> list[Message] | None:
        """The body's messages, or None once it is longer than allowed."""
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages  # the client went away: the app will see it too
            size += len(message.get("body", b""))
            if size > self._body_bytes:
                return None
            if not message.get("more_body", False):
                return messages

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await problem(413, f"the request body is longer than {self._body_bytes} bytes")(
            scope, receive, send
        )


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that gives `messages` first, then whatever comes next."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
