"""The API's connections get TCP_NODELAY: without it every answer waited ~40 ms.

Found while fuzzing the API over HTTP: each request took 44 ms on loopback, 1.5 ms once fixed.
asyncio sets TCP_NODELAY only on sockets whose protocol number is IPPROTO_TCP, and the
collector bound its API with `socket.create_server`, which leaves it 0; uvicorn writes a
response's head and body separately, so Nagle's algorithm held the body until the client's
delayed ACK.
"""

from __future__ import annotations

import asyncio
import socket

from collector.api.server import listening_socket
from collector.runtime import _bind
from configkit.network import ListenAddress


async def _nodelay_of_accepted(sock: socket.socket) -> int:
    """TCP_NODELAY of the connection an asyncio server accepts on `sock`."""
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def accepted(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = writer.get_extra_info("socket")
        seen.set_result(connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    host, port = sock.getsockname()[:2]
    async with await asyncio.start_server(accepted, sock=sock):
        _reader, writer = await asyncio.open_connection(host, port)
        flag = await asyncio.wait_for(seen, 10)
        writer.close()
        return flag


async def test_the_api_socket_gives_its_connections_tcp_nodelay() -> None:
    assert await _nodelay_of_accepted(listening_socket("127.0.0.1", 0)) != 0


async def test_a_plain_create_server_socket_would_not() -> None:
    # Why the API makes its own socket (this is what it used before).
    assert await _nodelay_of_accepted(socket.create_server(("127.0.0.1", 0))) == 0


def test_collector_serve_binds_with_it() -> None:
    with _bind(ListenAddress("127.0.0.1", 0)) as sock:
        assert sock.proto == socket.IPPROTO_TCP
    with _bind(ListenAddress("::1", 0)) as sock:
        assert (sock.family, sock.proto) == (socket.AF_INET6, socket.IPPROTO_TCP)
