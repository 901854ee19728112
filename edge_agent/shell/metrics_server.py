"""A tiny HTTP/1.1 responder on the agent's event loop: `GET /metrics`, nothing else.

Why not prometheus_client's `start_http_server`: it serves from a thread, and the agent is
one asyncio loop with no threads but where a library forces one (DESIGN section 2); the
outbox figures are read through aiosqlite on that loop at scrape time. Why not uvicorn (a
collector dependency) or aiohttp (none of ours): one read-only GET does not need a web
framework on a small gateway. So: `asyncio.start_server`, one request per connection
(`Connection: close`, which Prometheus handles), its head bounded in size and time so that a
stuck or hostile client cannot hold a connection or memory.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Final

import structlog

from edge_agent.core.plan import MetricsPlan
from edge_agent.shell.one_request import ACCEPT_BACKLOG, Handler, one_request_handler

log = structlog.get_logger("edge_agent.metrics")

METRICS_PATH: Final = "/metrics"
MAX_HEAD_BYTES: Final = 8192
"""A request line and headers longer than this get 431: a scraper sends a few hundred."""
HEAD_TIMEOUT: Final = 5.0
"""Seconds a client has to send its request head, and again to take the answer."""
_CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

Scrape = Callable[[], Awaitable[bytes]]


class ScrapeFailedError(Exception):
    """The metrics cannot be rendered now (the server answers 503 with this message)."""


def _response(
    status: HTTPStatus, body: bytes, content_type: str, *, extra: str = "", head_only: bool = False
) -> bytes:
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{extra}"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + (b"" if head_only else body)


def _text(status: HTTPStatus, message: str, *, extra: str = "") -> bytes:
    return _response(status, f"{message}\n".encode(), "text/plain; charset=utf-8", extra=extra)


async def _answer(head: bytes, scrape: Scrape) -> bytes:
    """The whole response to one request head."""
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):  # noqa: PLR2004 - method target version
        return _text(HTTPStatus.BAD_REQUEST, "not an HTTP/1.x request")
    method, target, _ = parts
    if target.split("?", 1)[0] != METRICS_PATH:
        return _text(HTTPStatus.NOT_FOUND, f"only {METRICS_PATH} is served here")
    if method not in {"GET", "HEAD"}:
        return _text(HTTPStatus.METHOD_NOT_ALLOWED, "GET only", extra="Allow: GET, HEAD\r\n")
    try:
        body = await scrape()
    except ScrapeFailedError as exc:
        log.warning("metrics_scrape_failed", error=str(exc))
        return _text(HTTPStatus.SERVICE_UNAVAILABLE, str(exc))
    return _response(HTTPStatus.OK, body, _CONTENT_TYPE, head_only=method == "HEAD")


def _handler(scrape: Scrape) -> Handler:
    async def reply(head: bytes) -> bytes:
        return await _answer(head, scrape)

    return one_request_handler(
        reply,
        ends_with=b"\r\n\r\n",
        timeout=HEAD_TIMEOUT,
        too_long=_text(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too long"),
    )


def try_listening(host: str, port: int) -> None:
    """Raise the OSError `serve_metrics` would meet listening on (host, port) now.

    Each address the host resolves to is bound as `asyncio.start_server` binds it (with
    SO_REUSEADDR) and let go at once, so `run` refuses a taken port or an address of another
    host before anything starts instead of failing after the outbox is open. A name that
    does not resolve raises socket.gaierror, an OSError too.
    """
    for family, kind, proto, _, address in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        with socket.socket(family, kind, proto) as trial:
            trial.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio does: IPv6 only, not dual-stack
                trial.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            trial.bind(address)


async def serve_metrics(host: str, port: int, scrape: Scrape) -> asyncio.Server:
    """Listen on (host, port) and answer `GET /metrics` with `scrape()` (OSError if taken)."""
    try:
        server = await asyncio.start_server(
            _handler(scrape), host, port, limit=MAX_HEAD_BYTES, backlog=ACCEPT_BACKLOG
        )
    except OSError as exc:  # a taken port, an address not on this host: the journal says which
        log.exception("metrics_listen_failed", listen=f"{host}:{port}", error=str(exc))
        raise
    log.info("metrics_listening", listen=f"{host}:{port}", path=METRICS_PATH)
    return server


async def metrics_service(
    config: MetricsPlan | None, scrape: Scrape
) -> tuple[asyncio.Task[None], ...]:
    """The agent's metrics task when `metrics.listen` is set (none otherwise).

    The socket is bound here, so a taken port fails the start (OSError) rather than a task
    later; cancelling the task closes the listening socket.
    """
    if config is None:
        return ()
    server = await serve_metrics(config.host, config.port, scrape)
    return (asyncio.create_task(server.serve_forever(), name="metrics"),)
