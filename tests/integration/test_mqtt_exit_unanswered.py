"""Leaving a client that ends its session is bounded, and a cancellation there still releases it.

`CancelSafeClient.__aexit__` (with `end_session_at_exit`) queues a DISCONNECT carrying Session
Expiry Interval 0 and waits until paho has written it. Behind a broker that reads nothing
(a real Mosquitto frozen with SIGSTOP, its socket buffers filled by a large publish) the
DISCONNECT is never written: the wait had no bound, so a collector's stop hung there, and a
cancellation of it skipped aiomqtt's own exit (the client's lock kept, its socket open).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiomqtt
import pytest

from hostkit.mqtt import EXIT_SECONDS, CancelSafeClient
from tests.support.broker import Broker

pytestmark = pytest.mark.timeout(90)

_FILL = 64 * 1024 * 1024  # more than loopback's socket buffers hold, both ends together


@asynccontextmanager
async def _frozen_behind(broker: Broker) -> AsyncIterator[CancelSafeClient]:
    """A connected client ending its session at exit; its broker frozen, the socket full."""
    assert broker.process is not None
    client = CancelSafeClient(
        "127.0.0.1", broker.port, identifier="exit-unanswered", protocol=aiomqtt.ProtocolVersion.V5
    )
    await client.__aenter__()
    client.end_session_at_exit()
    os.kill(broker.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(aiomqtt.MqttError):  # never written whole: the broker reads nothing
            await client.publish("fill", b"x" * _FILL, qos=0, timeout=1.0)
        yield client
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)


def _released(client: CancelSafeClient) -> bool:
    """aiomqtt's exit ran: its reusability lock released, the socket closed."""
    return not client._lock.locked() and client._client.socket() is None


async def test_the_exit_gives_up_on_a_disconnect_never_written(broker: Broker) -> None:
    async with _frozen_behind(broker) as client:
        started = time.monotonic()
        async with asyncio.timeout(EXIT_SECONDS + 20):  # before: never returned
            await client.__aexit__(None, None, None)
        took = time.monotonic() - started
    assert EXIT_SECONDS - 0.5 <= took < EXIT_SECONDS + 10
    assert _released(client)


async def test_a_cancellation_while_the_exit_waits_still_releases_the_client(
    broker: Broker,
) -> None:
    async with _frozen_behind(broker) as client:
        leaving = asyncio.create_task(client.__aexit__(None, None, None))
        await asyncio.sleep(0.5)
        assert not leaving.done()
        leaving.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leaving
    assert _released(client)  # before: lock held, socket open, aiomqtt's misc task running
