"""Leaving a client is bounded, masks nothing, and a cancellation there still releases it.

`CancelSafeClient.__aexit__` (with `end_session_at_exit`) queues a DISCONNECT carrying Session
Expiry Interval 0 and waits until paho has written it. Behind a broker that reads nothing
(a real Mosquitto frozen with SIGSTOP, its socket buffers filled by a large publish) the
DISCONNECT is never written: the wait had no bound, so a collector's stop hung there, and a
cancellation of it skipped aiomqtt's own exit (the client's lock kept, its socket open).

The plain exit (no `end_session_at_exit`: a collector's stop keeping its session, the agent's
uplink, a pushed site map) was aiomqtt's own: it waited for its DISCONNECT up to aiomqtt's call
timeout (10 s by default), then raised MqttError from `__aexit__`, in place of the exception
the body raised (the session's real end, a stop's CancelledError), the client's lock kept.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager

import aiomqtt
import pytest
from structlog.testing import capture_logs

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
    with capture_logs() as logs:
        async with _frozen_behind(broker) as client:
            leaving = asyncio.create_task(client.__aexit__(None, None, None))
            await asyncio.sleep(0.5)
            assert not leaving.done()
            leaving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await leaving
    assert _released(client)  # before: lock held, socket open, aiomqtt's misc task running
    # The DISCONNECT the close dropped is told, as one given up on is (before: not a word).
    [warning] = [e for e in logs if e["event"] == "mqtt_disconnect_not_written"]
    assert (warning["log_level"], warning["cancelled"]) == ("warning", True)


class _BodyError(Exception):
    """What the body of the `async with` raised; `at`: time.monotonic() when it was raised."""

    def __init__(self) -> None:
        super().__init__("the session's own end")
        self.at = time.monotonic()


@asynccontextmanager
async def _thawed_after(broker: Broker) -> AsyncIterator[Callable[[], None]]:
    """Yields `freeze`, which stops the broker (SIGSTOP: it reads nothing); thawed at the end."""
    assert broker.process is not None
    pid = broker.process.pid
    try:
        yield lambda: os.kill(pid, signal.SIGSTOP)
    finally:
        os.kill(pid, signal.SIGCONT)


def _plain_client(broker: Broker) -> CancelSafeClient:
    # aiomqtt's own call timeout (10 s by default) is what ended its unbounded-looking exit
    # wait before; set far off here so that the exit's bound can only come from EXIT_SECONDS.
    return CancelSafeClient(
        "127.0.0.1",
        broker.port,
        identifier="plain-exit",
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=EXIT_SECONDS * 6,
    )


async def _fill(client: CancelSafeClient) -> None:
    """Fill the socket to a frozen broker: a DISCONNECT queued after it is never written."""
    with pytest.raises(aiomqtt.MqttError):
        await client.publish("fill", b"x" * _FILL, qos=0, timeout=1.0)


def _warned(logs: Iterable[Mapping[str, object]]) -> bool:
    return any(
        e["event"] == "mqtt_disconnect_not_written" and e["log_level"] == "warning" for e in logs
    )


_BOUND = EXIT_SECONDS * 3  # a bound, not a timing goal: the exit gives up at EXIT_SECONDS


async def test_a_plain_exit_behind_a_frozen_broker_lets_the_body_failure_through(
    broker: Broker,
) -> None:
    # Before: the exit waited for the DISCONNECT until aiomqtt's call timeout, then raised
    # MqttError("Operation timed out") in place of _BodyError, the client's lock kept.
    client = _plain_client(broker)

    async def session(freeze: Callable[[], None]) -> None:
        async with client:
            freeze()
            await _fill(client)
            raise _BodyError

    with capture_logs() as logs:
        async with _thawed_after(broker) as freeze:
            with pytest.raises(_BodyError) as raised:
                await session(freeze)
            took = time.monotonic() - raised.value.at
    assert took < _BOUND
    assert not client._lock.locked()
    assert _warned(logs)
    async with client:  # entered again, a new connection: the broker answers again
        await client.publish("after", b"1", qos=1)


async def test_a_plain_exit_after_a_normal_body_returns(broker: Broker) -> None:
    # sites.publish_command: its PUBLISH was acknowledged; the DISCONNECT alone was not
    # written. Not a failure of the command: logged, and the exit returns.
    client = _plain_client(broker)
    with capture_logs() as logs:
        async with _thawed_after(broker) as freeze:
            async with client:
                freeze()
                await _fill(client)
                started = time.monotonic()
            took = time.monotonic() - started
    assert took < _BOUND
    assert not client._lock.locked()
    assert _warned(logs)


async def test_a_stop_during_the_body_behind_a_frozen_broker_is_a_cancellation(
    broker: Broker,
) -> None:
    # Before: the stop's CancelledError was replaced by the exit's MqttError, after its wait.
    client = _plain_client(broker)
    filled = asyncio.Event()

    async def session(freeze: Callable[[], None]) -> None:
        async with client:
            freeze()
            await _fill(client)
            filled.set()
            await asyncio.Event().wait()  # a session idles until stopped

    with capture_logs() as logs:
        async with _thawed_after(broker) as freeze:
            running = asyncio.create_task(session(freeze))
            await filled.wait()
            started = time.monotonic()
            running.cancel()
            with pytest.raises(asyncio.CancelledError):
                await running
            took = time.monotonic() - started
    assert took < _BOUND
    assert not client._lock.locked()
    assert _warned(logs)
