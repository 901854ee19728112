"""A TCP proxy on loopback that injects link faults: the project's own, in the toxiproxy model.

`tc netem` is not available on the test machines and toxiproxy is a Go binary we do not ship,
so faults between two real programs (agent and broker) are injected here, in asyncio. Put the
proxy between them (`FaultProxy(upstream_port=broker.port)`, the client connects to
`proxy.port`) and switch faults while they run; every switch applies to the connections
already open and to new ones:

* `latency` +- `jitter` seconds on every chunk, per direction; order is kept (TCP keeps it),
  so a chunk is never delivered before the one read ahead of it.
* `reset_all()` cuts every open connection with a TCP RST on both sides (SO_LINGER 0), as a
  NAT box or a dying modem does.
* `half_open`: nothing is forwarded any more and the sockets stay open: no FIN, no RST, data
  in either direction is swallowed, and a side closing its socket is not passed on. Only a
  keepalive can notice. Clearing it resets the connections that went dark (their byte
  streams have holes), so the next connection starts clean.
* `slice_bytes` (with `slice_delay` between writes): chunks are written a few bytes at a
  time, each write drained before the next, so the peer's reads see short segments and
  packet-splitting bugs show.
* `refuse`: new connections are accepted and reset at once (the far end is down).

`ProxyThread` runs a proxy on its own event loop in a background thread, for synchronous
tests and benchmarks (`with ProxyThread(upstream_port=...) as proxy: proxy.set(...)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
import threading
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Self, TypedDict, TypeVar, Unpack

from simulators.lifecycle import cancel_task

_T = TypeVar("_T")
_CHUNK = 65536
# Chunks read ahead of a slow (delayed or sliced) writer; past this the reader waits, so a
# proxy's memory stays bounded whatever the latency.
_QUEUE_CHUNKS = 64


class FaultChanges(TypedDict, total=False):
    """The faults a `set` may change (the fields of `Faults`)."""

    latency: float
    jitter: float
    slice_bytes: int
    slice_delay: float
    half_open: bool
    refuse: bool


@dataclass(frozen=True, slots=True)
class Faults:
    """The faults in force; every field off by default (a plain pass-through)."""

    latency: float = 0.0
    jitter: float = 0.0
    slice_bytes: int = 0
    slice_delay: float = 0.0
    half_open: bool = False
    refuse: bool = False

    def __post_init__(self) -> None:
        if self.latency < 0 or self.jitter < 0 or self.slice_delay < 0 or self.slice_bytes < 0:
            raise ValueError(f"fault settings must not be negative: {self}")
        if self.jitter > self.latency:
            raise ValueError("jitter must not exceed latency (a chunk cannot arrive early)")


@dataclass(slots=True)
class ProxyStats:
    """What the proxy has done so far (a snapshot when read through `ProxyThread`)."""

    accepted: int = 0
    refused: int = 0
    active: int = 0
    resets: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    writes_up: int = 0
    writes_down: int = 0
    swallowed: int = 0


@dataclass(eq=False, slots=True)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    dark: bool = False  # went through half-open: its streams have holes
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """One listening port on 127.0.0.1 forwarding to one upstream port, with faults."""

    def __init__(
        self,
        upstream_port: int,
        *,
        upstream_host: str = "127.0.0.1",
        listen_port: int = 0,
        seed: int | None = None,
    ) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listen_port = listen_port
        self._random = random.Random(seed)
        self._faults = Faults()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.stats = ProxyStats()

    @property
    def port(self) -> int:
        """The port clients connect to."""
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults

    def set(self, **changes: Unpack[FaultChanges]) -> Faults:
        """Change some faults (the others stay); return the faults now in force."""
        was = self._faults
        self._faults = replace(was, **changes)
        if self._faults.half_open:
            for connection in self._connections:
                connection.dark = True
        elif was.half_open:
            self.stats.resets += self._reset([c for c in self._connections if c.dark])
        return self._faults

    def clear(self) -> Faults:
        """Back to a plain pass-through (dark connections are reset)."""
        return self.set(
            latency=0.0, jitter=0.0, slice_bytes=0, slice_delay=0.0, half_open=False, refuse=False
        )

    def reset_all(self) -> int:
        """Cut every open connection with a RST on both sides; return how many."""
        count = self._reset(list(self._connections))
        self.stats.resets += count
        return count

    def _reset(self, connections: Iterable[_Connection]) -> int:
        count = 0
        for connection in connections:
            _abort(connection.client)
            _abort(connection.upstream)
            for task in connection.tasks:
                task.cancel()
            self._connections.discard(connection)
            count += 1
        self.stats.active = len(self._connections)
        return count

    async def start(self) -> None:
        """Listen on 127.0.0.1 (a free port unless one was given)."""
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._listen_port)

    async def close(self) -> None:
        """Stop listening and reset every connection."""
        if self._server is not None:
            self._server.close()
            self._reset(list(self._connections))  # closing is not a fault: not counted
            # The handlers end by themselves once their connections are gone.
            if self._handlers:
                await asyncio.wait(self._handlers, timeout=10)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            if task is not None:
                self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._faults.refuse:
            self.stats.refused += 1
            _abort(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            self.stats.refused += 1
            _abort(writer)
            return
        for side in (writer, up_writer):
            sock = side.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = _Connection(writer, up_writer, dark=self._faults.half_open)
        self._connections.add(connection)
        self.stats.accepted += 1
        self.stats.active = len(self._connections)
        connection.tasks = [
            asyncio.create_task(self._pump(connection, reader, up_writer, up=True)),
            asyncio.create_task(self._pump(connection, up_reader, writer, up=False)),
        ]
        try:
            await asyncio.gather(*connection.tasks, return_exceptions=True)
        finally:
            if connection in self._connections:
                self._connections.discard(connection)
                self.stats.active = len(self._connections)
                for side in (writer, up_writer):
                    side.close()
                    with contextlib.suppress(OSError, asyncio.CancelledError):
                        await side.wait_closed()

    async def _pump(
        self,
        connection: _Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        up: bool,
    ) -> None:
        """Read one direction and hand chunks to its writer, due after latency +- jitter."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(_QUEUE_CHUNKS)
        loop = asyncio.get_running_loop()
        deliver = asyncio.create_task(self._deliver(connection, queue, writer, up=up))
        last_due = 0.0
        try:
            while True:
                try:
                    data = await reader.read(_CHUNK)
                except OSError:
                    data = b""
                if connection.dark or self._faults.half_open:
                    connection.dark = True
                    self.stats.swallowed += len(data)
                    if not data:
                        # A half-open link passes no FIN either: this side stays as it is.
                        await asyncio.Event().wait()
                    continue
                if not data:
                    break
                faults = self._faults
                delay = faults.latency + self._random.uniform(-faults.jitter, faults.jitter)
                last_due = max(last_due, loop.time() + max(0.0, delay))
                await queue.put((last_due, data))
            await queue.put(None)
            await deliver
        finally:
            await cancel_task(deliver)

    async def _deliver(
        self,
        connection: _Connection,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        writer: asyncio.StreamWriter,
        *,
        up: bool,
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            item = await queue.get()
            if item is None:
                # The other end said FIN: pass it on, and end the whole connection.
                with contextlib.suppress(OSError):
                    writer.close()
                return
            due, data = item
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if connection.dark:
                self.stats.swallowed += len(data)
                continue
            try:
                await self._write(writer, data, up=up)
            except OSError:
                return

    async def _write(self, writer: asyncio.StreamWriter, data: bytes, *, up: bool) -> None:
        size = self._faults.slice_bytes or len(data)
        for start in range(0, len(data), size):
            piece = data[start : start + size]
            writer.write(piece)
            await writer.drain()
            if up:
                self.stats.bytes_up += len(piece)
                self.stats.writes_up += 1
            else:
                self.stats.bytes_down += len(piece)
                self.stats.writes_down += 1
            delay = self._faults.slice_delay
            if self._faults.slice_bytes and delay and start + size < len(data):
                await asyncio.sleep(delay)


class ProxyThread:
    """A `FaultProxy` on its own event loop in a daemon thread, driven synchronously."""

    def __init__(self, upstream_port: int, *, seed: int | None = None) -> None:
        """A proxy on a free port to `upstream_port` on 127.0.0.1 (what its users need)."""
        self._loop = asyncio.new_event_loop()
        self._proxy = FaultProxy(upstream_port, seed=seed)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    def _call(self, function: Callable[[], _T]) -> _T:
        async def call() -> _T:
            return function()

        return self._await(call())

    def _await(self, coroutine: Awaitable[_T]) -> _T:
        async def run() -> _T:
            return await coroutine

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def __enter__(self) -> Self:
        self._thread.start()
        self._await(self._proxy.start())
        self.port = self._proxy.port
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._await(self._proxy.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()

    def set(self, **changes: Unpack[FaultChanges]) -> Faults:
        """`FaultProxy.set`, run on the proxy's loop."""
        return self._call(lambda: self._proxy.set(**changes))

    def clear(self) -> Faults:
        """`FaultProxy.clear`, run on the proxy's loop."""
        return self._call(self._proxy.clear)

    def reset_all(self) -> int:
        """`FaultProxy.reset_all`, run on the proxy's loop."""
        return self._call(self._proxy.reset_all)

    def stats(self) -> ProxyStats:
        """A copy of the proxy's counters."""
        return self._call(lambda: replace(self._proxy.stats))
