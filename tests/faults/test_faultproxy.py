"""The fault proxy does what each mode says, on real loopback sockets and a real Mosquitto.

No assertion bounds a duration from above: a mode that withholds data is checked by waiting a
while and seeing nothing (which load cannot turn into a false failure), latency by a lower
bound on the round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiomqtt
import pytest

from demo.broker import Broker
from tests.support.faultproxy import FaultProxy, Faults, ProxyThread

pytestmark = pytest.mark.timeout(60)

QUIET = 0.5  # how long "nothing arrives" is watched for


@dataclass
class Upstream:
    """An echo server that also records what it read, chunk by chunk."""

    chunks: list[bytes] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    ended: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    handlers: set[asyncio.Task[object]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        self.writers.append(writer)
        try:
            while data := await reader.read(65536):
                self.chunks.append(data)
                self.arrived.set()
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            self.ended += 1
            writer.close()

    @property
    def received(self) -> bytes:
        return b"".join(self.chunks)


@contextlib.asynccontextmanager
async def echo_upstream() -> AsyncIterator[Upstream]:
    upstream = Upstream()
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", 0)
    upstream.port = int(server.sockets[0].getsockname()[1])
    try:
        yield upstream
    finally:
        for writer in upstream.writers:
            writer.close()
        server.close()
        if upstream.handlers:  # each ends once its socket is closed
            await asyncio.wait(upstream.handlers, timeout=10)
        await server.wait_closed()


@contextlib.asynccontextmanager
async def proxied() -> AsyncIterator[tuple[FaultProxy, Upstream]]:
    async with echo_upstream() as upstream, FaultProxy(upstream.port, seed=1) as proxy:
        yield proxy, upstream


async def connect(proxy: FaultProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def echo(proxy: FaultProxy, payload: bytes) -> bytes:
    """Send `payload` through the proxy to the echoing upstream; what comes back."""
    reader, writer = await connect(proxy)
    writer.write(payload)
    await writer.drain()
    echoed = await reader.readexactly(len(payload))
    writer.close()
    return echoed


async def until(condition: object, what: str, timeout: float = 10.0) -> None:
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


async def nothing_arrives(reader: asyncio.StreamReader) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(QUIET):
            await reader.read(1)


async def test_pass_through_forwards_bytes_intact_both_ways() -> None:
    payload = os.urandom(256 * 1024)
    async with proxied() as (proxy, upstream):
        echoed = await echo(proxy, payload)
    assert echoed == payload
    assert upstream.received == payload
    assert proxy.stats.bytes_up == proxy.stats.bytes_down == len(payload)
    assert proxy.stats.accepted == 1


async def test_latency_delays_each_direction_and_jitter_keeps_order() -> None:
    async with proxied() as (proxy, _):
        proxy.set(latency=0.15)
        reader, writer = await connect(proxy)
        started = time.monotonic()
        writer.write(b"ping")
        await reader.readexactly(4)
        round_trip = time.monotonic() - started
        # Jitter as large as the latency itself: chunks would overtake each other if the
        # proxy did not keep their order.
        proxy.set(latency=0.03, jitter=0.03)
        messages = [f"<{n:03d}>".encode() for n in range(60)]
        for message in messages:
            writer.write(message)
            await writer.drain()
            await asyncio.sleep(0.002)  # separate reads at the proxy, separate due times
        echoed = await reader.readexactly(sum(map(len, messages)))
        writer.close()
    assert round_trip >= 0.29, f"round trip {round_trip:.3f}s through 2 x 150 ms latency"
    assert echoed == b"".join(messages)


async def test_reset_all_cuts_both_sides_with_a_reset_and_new_connections_still_pass() -> None:
    async with proxied() as (proxy, upstream):
        reader, writer = await connect(proxy)
        writer.write(b"hello")
        assert await reader.readexactly(5) == b"hello"
        assert proxy.reset_all() == 1
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(1), 10)
        await until(lambda: upstream.ended == 1, "the upstream side was cut too")
        reader, writer = await connect(proxy)
        writer.write(b"again")
        assert await reader.readexactly(5) == b"again"
        writer.close()
    assert proxy.stats.resets == 1
    assert proxy.stats.accepted == 2


async def test_half_open_forwards_nothing_and_closes_nothing_until_cleared() -> None:
    async with proxied() as (proxy, upstream):
        reader, writer = await connect(proxy)
        writer.write(b"up")
        assert await reader.readexactly(2) == b"up"
        proxy.set(half_open=True)
        writer.write(b"lost")
        await writer.drain()
        await nothing_arrives(reader)
        assert upstream.received == b"up", "data went through a half-open link"
        # The far end goes away: its FIN must not reach the client either.
        for far in upstream.writers:
            far.close()
        await until(lambda: upstream.ended == 1, "the upstream closed its side")
        await nothing_arrives(reader)
        assert not reader.at_eof()
        # A connection made meanwhile is accepted and just as dark.
        reader2, writer2 = await connect(proxy)
        writer2.write(b"dark")
        await nothing_arrives(reader2)
        assert upstream.received == b"up"
        assert proxy.stats.swallowed >= len(b"lost") + len(b"dark")
        # Clearing resets the dark connections (their streams have holes) ...
        proxy.set(half_open=False)
        for dark in (reader, reader2):
            with contextlib.suppress(ConnectionResetError):
                async with asyncio.timeout(10):
                    assert await dark.read(1) == b""
        # ... and the link works again for a new one.
        reader3, writer3 = await connect(proxy)
        writer3.write(b"back")
        assert await reader3.readexactly(4) == b"back"
        for w in (writer, writer2, writer3):
            w.close()


async def test_slicing_writes_one_byte_at_a_time() -> None:
    payload = bytes(range(200))
    async with proxied() as (proxy, upstream):
        proxy.set(slice_bytes=1, slice_delay=0.001)
        echoed = await echo(proxy, payload)
    assert echoed == payload
    assert upstream.received == payload
    assert proxy.stats.writes_up == proxy.stats.writes_down == len(payload)
    # The upstream shares the proxy's loop and runs between the proxy's writes: it sees the
    # payload in many short segments, not the one chunk the client wrote.
    assert len(upstream.chunks) > 1
    assert max(map(len, upstream.chunks)) < len(payload)


async def test_refuse_resets_new_connections_at_once() -> None:
    async with proxied() as (proxy, upstream):
        proxy.set(refuse=True)
        reader, writer = await connect(proxy)
        with contextlib.suppress(ConnectionResetError):
            async with asyncio.timeout(10):
                assert await reader.read(1) == b""
        writer.close()
        proxy.set(refuse=False)
        reader, writer = await connect(proxy)
        writer.write(b"ok")
        assert await reader.readexactly(2) == b"ok"
        writer.close()
    assert proxy.stats.refused == 1
    assert upstream.received == b"ok"


def test_fault_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="jitter"):
        Faults(latency=0.01, jitter=0.02)
    with pytest.raises(ValueError, match="negative"):
        Faults(slice_bytes=-1)


def test_the_threaded_proxy_is_driven_from_synchronous_code() -> None:
    async def serve_once() -> None:
        async with echo_upstream() as upstream:
            with ProxyThread(upstream.port) as proxy:
                assert proxy.set(latency=0.01).latency == 0.01
                # The test's loop and the proxy's loop run side by side.
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
                writer.write(b"abc")
                assert await reader.readexactly(3) == b"abc"
                assert proxy.stats().bytes_up == 3
                assert proxy.reset_all() == 1
                writer.close()
                assert proxy.clear() == Faults()

    asyncio.run(serve_once())


# --- MQTT through the proxy, against a real broker -----------------------------------------


def mqtt_client(port: int, name: str, keepalive: int = 60) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=name,
        protocol=aiomqtt.ProtocolVersion.V5,
        keepalive=keepalive,
    )


async def test_mqtt_survives_one_byte_slices_with_latency_and_jitter(broker: Broker) -> None:
    async with FaultProxy(broker.port, seed=2) as proxy:
        proxy.set(slice_bytes=1, latency=0.01, jitter=0.005)
        async with mqtt_client(proxy.port, "sliced") as client:
            await client.subscribe("t/sliced", qos=1)
            sent = [os.urandom(300) for _ in range(20)]
            for payload in sent:
                await client.publish("t/sliced", payload, qos=1)
            received = []
            async with asyncio.timeout(30):
                async for message in client.messages:
                    received.append(bytes(message.payload))
                    if len(received) == len(sent):
                        break
    assert received == sent
    assert proxy.stats.writes_up > sum(map(len, sent)), "the uplink was not sliced"


async def test_mqtt_keepalive_notices_a_half_open_link(broker: Broker) -> None:
    async with FaultProxy(broker.port) as proxy:
        with pytest.raises(aiomqtt.MqttError):  # noqa: PT012 - the link dies inside
            async with mqtt_client(proxy.port, "half-open", keepalive=1) as client:
                await client.subscribe("t/half", qos=1)
                proxy.set(half_open=True)
                started = time.monotonic()
                async with asyncio.timeout(20):
                    async for _ in client.messages:
                        pass
        noticed = time.monotonic() - started
        assert proxy.stats.active == 1, "the proxy kept the dead connection open"
    print(f"keepalive 1 s noticed the half-open link after {noticed:.1f} s")
