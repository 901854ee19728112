"""A connect cancelled while it waits for CONNACK leaves nothing behind.

aiomqtt's `__aenter__` waits for CONNACK with `wait_for`, which cancels its `_connected` future
on a cancellation and returns neither the socket nor the lock: the TCP connection stayed open,
its misc loop (`Client._misc_loop`) kept it alive with PINGREQs, and the next disconnect
callback raised CancelledError reading the cancelled future. Seen in the fresh-clone CI at
f2a67c1: test_collector_takeover[sqlite-under-traffic] left `Client._misc_loop` running (an
ingest session stopped while it reconnected). Here the "broker" is a real loopback listener
that accepts and answers nothing.
"""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from hostkit.mqtt import CancelSafeClient

pytestmark = pytest.mark.timeout(60)


def _misc_loops() -> list[asyncio.Task[object]]:
    return [
        t
        for t in asyncio.all_tasks()
        if not t.done() and getattr(t.get_coro(), "__qualname__", "") == "Client._misc_loop"
    ]


async def test_a_connect_cancelled_before_its_connack_closes_and_releases() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # never answers: no CONNACK

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = CancelSafeClient("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5)
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):
                await client.__aenter__()
        await asyncio.sleep(0.1)  # a cancel handed on with call_soon_threadsafe lands
        assert client._client.socket() is None  # before: the connection left open
        assert not client._lock.locked()  # before: held, the client never usable again
        assert _misc_loops() == []  # before: Client._misc_loop pinging on
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
