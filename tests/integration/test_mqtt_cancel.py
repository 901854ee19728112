"""A cancellation that lands as the broker's answer arrives still cancels (Python 3.11).

aiomqtt 2.x waits for a CONNACK, SUBACK or PUBACK with asyncio.wait_for. On 3.11, when the
waiting task is cancelled in the loop iteration that handled the answer, wait_for finds the
answer there, returns it and drops the cancellation: the caller goes on as if never cancelled,
with Task.cancelling() left at 1. Cancelled at random moments, a QoS 1 flood on loopback goes
on publishing after about half of its cancellations (the ~90 s "stall" of the stop-mid-batch
test was its 100,000-block flood running to its end, about 1 ms a block).

The tests cancel from inside the paho callback that handles the answer, so the race is hit
every time; the broker is a real Mosquitto.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from collector.ingest.service import Ingest, IngestSettings
from collector.storage import open_storage
from edge_agent.shell.outbox_open import open_outbox
from hostkit.mqtt import CancelSafeClient
from tests.support.broker import Broker
from tests.support.collector_env import COLLECTOR_KEY
from tests.support.publisher_rig import GATEWAY_KEY, SITE, gateway_publisher

pytestmark = pytest.mark.timeout(30)

STOP_WITHIN = 5.0


class CancelOnAnswer:
    """Cancels `target` from inside aiomqtt's handler of a CONNACK, SUBACK or PUBACK.

    Installed on aiomqtt.Client (the class: the clients under test are built inside the code
    under test), so it fires in the very loop iteration that sets the awaited future or event.
    `waiting` says whether the target waits for that answer yet (see `_waits_for_connack`).
    """

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        handler: str,
        waiting: Callable[[aiomqtt.Client], bool] = lambda _: True,
    ) -> None:
        self.target: asyncio.Task[Any] | None = None
        self.before: Callable[[], None] = lambda: None
        self.fired = 0
        original = getattr(aiomqtt.Client, handler)

        def hooked(client: aiomqtt.Client, *args: Any) -> None:
            original(client, *args)
            if self.target is not None and not self.target.done() and waiting(client):
                self.fired += 1
                self.before()
                self.target.cancel()
                self.target = None  # once

        monkeypatch.setattr(aiomqtt.Client, handler, hooked)


def _waits_for_connack(client: aiomqtt.Client) -> bool:
    """Whether `client.__aenter__` is past its connect() in a thread, waiting for the CONNACK.

    The CONNACK can be read before that thread's result reaches the loop. A cancellation
    there is another story: it raises, but aiomqtt leaves the socket open and its misc task
    running. The first thing __aenter__ does after the thread is to set the socket options,
    NO_DELAY for the ingest's client: that tells the two moments apart.
    """
    sock = client._client.socket()  # the test's window into the race
    return isinstance(sock, socket.socket) and bool(
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    )


@pytest.fixture
def on_puback(monkeypatch: pytest.MonkeyPatch) -> CancelOnAnswer:
    return CancelOnAnswer(monkeypatch, "_on_publish")


async def _publish_once(
    port: int, hook: CancelOnAnswer, client_type: type[aiomqtt.Client]
) -> asyncio.Task[None]:
    async with client_type("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as client:

        async def publish() -> None:
            await client.publish("gz/test/cancel", b"x" * 1000, qos=1)

        task = asyncio.create_task(publish())
        hook.target = task
        await asyncio.wait([task], timeout=STOP_WITHIN)
        assert hook.fired == 1, "no PUBACK came"
        return task


async def test_aiomqtt_drops_a_cancellation_that_lands_with_the_puback(
    broker: Broker, on_puback: CancelOnAnswer
) -> None:
    # What the other tests rely on: the hook does hit the race. Should a later aiomqtt or
    # Python raise here, hostkit.mqtt.CancelSafeClient is a mere safeguard.
    task = await _publish_once(broker.port, on_puback, aiomqtt.Client)
    assert task.done()
    assert not task.cancelled()
    assert task.cancelling() == 1  # cancelled, yet it returned normally


async def test_a_cancel_safe_publish_raises_when_cancelled_as_its_puback_arrives(
    broker: Broker, on_puback: CancelOnAnswer
) -> None:
    task = await _publish_once(broker.port, on_puback, CancelSafeClient)
    assert task.cancelled()


@pytest.mark.parametrize("handler", ["_on_connect", "_on_subscribe"])
async def test_an_ingest_stopped_as_the_broker_answers_its_connect_ends(
    broker: Broker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, handler: str
) -> None:
    # `collector serve` on SIGTERM says stop and cancels the ingest, then waits for it with no
    # bound. Cancelled in the iteration its CONNACK or SUBACK was handled, it went on, and
    # waited for a first message before it looked at the stop: on an idle site, for good.
    waiting = _waits_for_connack if handler == "_on_connect" else (lambda _: True)
    hook = CancelOnAnswer(monkeypatch, handler, waiting)
    done: set[asyncio.Task[None]] = set()
    async with open_storage(f"sqlite:///{tmp_path / 'collector.db'}") as storage:
        for _ in range(5):  # until the CONNACK comes while the ingest waits for it
            ingest = Ingest(IngestSettings("127.0.0.1", broker.port), storage, COLLECTOR_KEY)
            task = asyncio.create_task(ingest.run())
            hook.target = task
            hook.before = ingest.stop  # what run_collector does before cancelling it
            connected = asyncio.create_task(ingest.connected.wait())
            await asyncio.wait([task, connected], return_when=asyncio.FIRST_COMPLETED)
            if hook.fired:
                done, _ = await asyncio.wait([task], timeout=STOP_WITHIN)
            ingest.stop()
            for leftover in (task, connected):
                leftover.cancel()  # the test's own cleanup, or the missed attempt's stop
            await asyncio.wait([task, connected], timeout=STOP_WITHIN)
            if hook.fired:
                break
        assert hook.fired == 1
        assert done, f"the ingest went on after a stop at its {handler[4:]}"
        assert task.cancelled()


async def test_a_command_result_cancelled_as_its_puback_arrives_raises(
    broker: Broker, on_puback: CancelOnAnswer, tmp_path: Path
) -> None:
    # The command desk's delivery task publishes results through the publisher; cancelled (an
    # agent restarting onto a pushed map cancels it, then gathers it) as the PUBACK came, it
    # went on to its next result and then waited for more, for good.
    async with open_outbox(tmp_path / "outbox.db", SITE, GATEWAY_KEY) as outbox:
        publisher = gateway_publisher(outbox, broker.port, ack_timeout=30, max_inflight=4)
        running = asyncio.create_task(publisher.run())
        try:
            await asyncio.wait_for(publisher.connected.wait(), 10)
            payload = b'{"result":"applied"}'
            task = asyncio.create_task(publisher.publish_result(payload, GATEWAY_KEY.sign(payload)))
            on_puback.target = task
            await asyncio.wait([task], timeout=STOP_WITHIN)
            assert on_puback.fired == 1
            assert task.cancelled()
        finally:
            publisher.stop()
            running.cancel()
            await asyncio.wait([running], timeout=STOP_WITHIN)
