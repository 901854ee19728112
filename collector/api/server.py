"""The HTTP server the API runs in: uvicorn, with the bounds only the server can enforce.

`RequestLimits.header_bytes` bounds the request line and headers together
(`h11_max_incomplete_event_size`; past it uvicorn answers a plain-text 400 and closes the
connection, before the app could render a problem document); `connections` bounds open
connections and tasks (`limit_concurrency`; beyond it uvicorn answers 503). The h11 parser is
chosen explicitly: only it takes the header bound, and uvicorn would pick httptools whenever
that happens to be installed.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from collector.api.sizes import RequestLimits


class ApiServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the collector's runtime owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave signals alone."""
        yield


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket for the API, made so that its connections get TCP_NODELAY.

    asyncio sets TCP_NODELAY only on sockets whose protocol number is IPPROTO_TCP, and
    `socket.create_server` leaves it 0: without it every response waited about 40 ms (Nagle's
    algorithm holding uvicorn's second write until the client's delayed ACK).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(socket.SOMAXCONN)
    except OSError:
        sock.close()
        raise
    return sock


def server_config(app: ASGIApp, limits: RequestLimits) -> uvicorn.Config:
    """The uvicorn settings of the API: quiet (structlog logs what matters) and bounded."""
    return uvicorn.Config(
        app,
        http="h11",
        h11_max_incomplete_event_size=limits.header_bytes,
        limit_concurrency=limits.connections,
        # The client is the connection's peer. uvicorn would otherwise believe X-Forwarded-For
        # on connections from 127.0.0.1, and anyone on this host could name a new address per
        # request, each with a full rate-limit bucket.
        proxy_headers=False,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
    )
