"""The HTTP server the API runs in: uvicorn, with the bounds only the server can enforce.

`RequestLimits.header_bytes` bounds the request line and headers together
(`h11_max_incomplete_event_size`; past it uvicorn answers a plain-text 400 and closes the
connection, before the app could render a problem document); `connections` bounds open
connections and tasks (`limit_concurrency`; beyond it uvicorn answers 503). The h11 parser is
chosen explicitly: only it takes the header bound, and uvicorn would pick httptools whenever
that happens to be installed.

`connections` alone let a few slow clients take the API from everyone: sockets that send a
request line and then a header line now and then are held open for ever (uvicorn has no
deadline for a request's head), and the rate limits only see whole requests. `BoundedH11`
adds the two bounds every HTTP server has for this: `head_timeout` for a head to arrive whole,
and `connections_per_address` for one client (by `ratelimit.client_key`).

The third is for the answer: a client that stopped reading a response (above all the endless
`/v1/stream`) kept its connection for ever, the events it did not take queued in the kernel
and the transport. Now a connection whose client has taken no byte of what was sent for
`send_timeout` is closed (with a reset, so the kernel keeps nothing for it), logged and counted.
Each connection's kernel holds at most `UNSENT_IN_KERNEL` bytes not yet sent
(TCP_NOTSENT_LOWAT; without it up to 3 MB of a stalled stream went into the kernel and the
transport never filled), so more than that waiting makes the transport pause writing, and
while it is paused a timer reads the kernel's count of bytes the client acknowledged
(tcpi_bytes_acked) every quarter of `send_timeout`: any byte taken starts the time afresh, so
a slow reader keeps its stream; a stream's client cut off resumes with Last-Event-ID. A
client that stopped reading while less than that was waiting for it (a quiet stream) costs
little and is not told apart from one that reads.

`send_timeout` was the connection's TCP_USER_TIMEOUT at first (688fc88), but the kernel did
not start that time afresh for bytes taken through window updates: a client reading 2 KiB
every 0.1 s was reset after ~4.5 s with a 3 s timeout in 7 of 10 runs on a loaded host.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import struct
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

import h11
import structlog
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from collector.api.limits import RequestLimits
from collector.api.ratelimit import client_key

log = structlog.get_logger("collector.api")

UNSENT_IN_KERNEL: Final = 65536
"""Bytes of a connection the kernel holds not yet sent (TCP_NOTSENT_LOWAT); more stay in the
transport, which pauses writing past its high-water mark."""
CHECKS_PER_TIMEOUT: Final = 4
"""How often within `send_timeout` a paused connection's progress is read."""
_BYTES_ACKED: Final = struct.Struct("=Q")  # struct tcp_info.tcpi_bytes_acked (Linux 4.1)
_BYTES_ACKED_AT: Final = 120
_NO_LINGER: Final = struct.pack("ii", 1, 0)  # close with a reset, nothing left queued


class ApiServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the collector's runtime owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Leave signals alone."""
        yield


class BoundedH11(H11Protocol):
    """uvicorn's h11 protocol with deadlines for a request's head and a stalled answer."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        head_timeout: float,
        per_address: int,
        send_timeout: float,
        stalled: Callable[[], None],
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._head_timeout = head_timeout
        self._per_address = per_address
        self._head_deadline: asyncio.TimerHandle | None = None
        self._send_timeout = send_timeout
        self._stalled = stalled  # counts a connection closed past send_timeout
        self._send_check: asyncio.TimerHandle | None = None
        self._taken = 0  # bytes the client acknowledged when last read
        self._taken_at = 0.0  # loop time they were first seen

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Admit the connection within its address's share, and wait for a head."""
        super().connection_made(transport)
        if self.client is not None and self._held_by_address() > self._per_address:
            transport.close()
            return
        transport.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, UNSENT_IN_KERNEL
        )
        self._await_head()

    def data_received(self, data: bytes) -> None:
        """Parse as uvicorn does; a whole head ends the wait."""
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._stop_waiting()

    def on_response_complete(self) -> None:
        """As uvicorn does; then the next head must come in time (pipelined: it may have)."""
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        """As uvicorn does, with no deadline nor send check left behind."""
        self._stop_waiting()
        self._stop_checking()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """As uvicorn does; the client must now take some of it within `send_timeout`."""
        super().pause_writing()
        if self._send_check is None:  # also once closing: what is left must still go out
            self._taken, self._taken_at = self._bytes_taken(), self.loop.time()
            self._check_later()

    def resume_writing(self) -> None:
        """As uvicorn does; the transport took what waited, so the client is taking it."""
        self._stop_checking()
        super().resume_writing()

    def _bytes_taken(self) -> int:
        info = self.transport.get_extra_info("socket").getsockopt(
            socket.IPPROTO_TCP, socket.TCP_INFO, _BYTES_ACKED_AT + _BYTES_ACKED.size
        )
        taken: int = _BYTES_ACKED.unpack_from(info, _BYTES_ACKED_AT)[0]
        return taken

    def _check_later(self) -> None:
        self._send_check = self.loop.call_later(
            self._send_timeout / CHECKS_PER_TIMEOUT, self._check_taking
        )

    def _stop_checking(self) -> None:
        _cancel(self._send_check)
        self._send_check = None

    def _check_taking(self) -> None:
        self._send_check = None
        taken, now = self._bytes_taken(), self.loop.time()
        if taken != self._taken:
            self._taken, self._taken_at = taken, now
        elif now - self._taken_at >= self._send_timeout:
            self._close_stalled()
            return
        self._check_later()

    def _close_stalled(self) -> None:
        scope: Mapping[str, Any] | None = self.scope  # None before a first request
        log.warning(
            "stalled_connection_closed",
            client=None if self.client is None else str(self.client[0]),
            path=None if scope is None else scope["path"],
            took_nothing_for=self._send_timeout,
        )
        self._stalled()
        self.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, _NO_LINGER
        )
        self.transport.abort()

    def _held_by_address(self) -> int:
        mine = client_key(str(self.client[0])) if self.client else None
        return sum(
            1
            for other in self.connections
            if isinstance(other, BoundedH11)
            and other.client is not None
            and client_key(str(other.client[0])) == mine
        )

    def _await_head(self) -> None:
        self._stop_waiting()
        self._head_deadline = self.loop.call_later(self._head_timeout, self._head_too_slow)

    def _stop_waiting(self) -> None:
        _cancel(self._head_deadline)
        self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            with contextlib.suppress(h11.LocalProtocolError):
                self.conn.send(h11.ConnectionClosed())
            self.transport.close()


def _cancel(timer: asyncio.TimerHandle | None) -> None:
    if timer is not None:
        timer.cancel()


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


def server_config(
    app: ASGIApp, limits: RequestLimits, *, stalled: Callable[[], None]
) -> uvicorn.Config:
    """The uvicorn settings of the API: quiet (structlog logs what matters) and bounded.

    `stalled` is called for each connection ended past `limits.send_timeout` (the metric).
    """
    return uvicorn.Config(
        app,
        http=functools.partial(  # type: ignore[arg-type] # uvicorn calls it like a class
            BoundedH11,
            head_timeout=limits.head_timeout,
            per_address=limits.connections_per_address,
            send_timeout=limits.send_timeout,
            stalled=stalled,
        ),
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
