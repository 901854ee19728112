"""The collector's durable MQTT session on a real Mosquitto: what is published while it is down.

The publisher here is a raw aiomqtt client that publishes each signed block exactly once and
never again (no agent, no resend): whatever the collector stores after its restart came out of
the broker's queue for its session.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiomqtt
import pytest

from collector.ingest.service import Ingest, IngestSettings
from collector.model import Reason
from collector.storage import open_storage
from collector.storage.base import Storage
from hostkit.mqtt import CancelSafeClient
from tests.support.broker import Broker
from tests.support.collector_client import SimGateway, publish_properties, sim_gateway
from tests.support.collector_env import COLLECTOR_KEY, register, running_ingest, wait_until
from tests.support.postgres import StorageUrls, sql_rows

GATEWAY = sim_gateway(7)
BLOCKS = 30
DURABLE = "gz-collector-durable-test"


@contextlib.asynccontextmanager
async def _publisher(broker: Broker) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, identifier="raw-publisher", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        yield client


async def _publish_once(client: aiomqtt.Client, gateway: SimGateway, seqs: Sequence[int]) -> None:
    """Publish each block once at QoS 1; each call returns after the broker's PUBACK."""
    for seq in seqs:
        payload = gateway.block(seq)  # one reading each; the chain is not under test here
        await client.publish(
            gateway.topics.block,
            payload,
            qos=1,
            properties=publish_properties(gateway.sign(payload)),
        )


async def _seqs(url: str) -> list[int]:
    rows = await sql_rows(url, "SELECT seq FROM blocks ORDER BY seq")
    return [int(row[0]) for row in rows]


async def _registered(url: str) -> None:
    async with open_storage(url) as storage:
        await register(storage, GATEWAY)


async def _stored(storage: Storage, count: int) -> None:
    async def seqs() -> int:
        state = await storage.stream(GATEWAY.gateway, "epoch-1")
        return 0 if state is None else state.acked_through

    await wait_until(seqs, lambda through: through >= count, timeout=30)


async def test_blocks_published_while_the_collector_is_down_wait_for_its_session(
    broker: Broker, storage_url: str
) -> None:
    database = storage_url
    await _registered(database)
    async with running_ingest(broker.port, database, COLLECTOR_KEY, client_id=DURABLE):
        pass  # connected and subscribed once, then stopped cleanly: the broker keeps its session
    async with _publisher(broker) as client:
        await _publish_once(client, GATEWAY, range(1, BLOCKS + 1))
    assert await _seqs(database) == []  # nobody took them yet
    async with running_ingest(broker.port, database, COLLECTOR_KEY, client_id=DURABLE) as (
        _,
        storage,
    ):
        await _stored(storage, BLOCKS)
        assert await storage.audit(reason=Reason.DUPLICATE) == ()
    assert await _seqs(database) == list(range(1, BLOCKS + 1))


async def test_without_a_stable_id_what_was_published_while_down_is_gone(
    broker: Broker, storage_url: str
) -> None:
    """The control: the same run with a random id and a session that ends at disconnect."""
    database = storage_url
    await _registered(database)
    async with running_ingest(broker.port, database, COLLECTOR_KEY):
        pass
    async with _publisher(broker) as client:
        await _publish_once(client, GATEWAY, range(1, BLOCKS + 1))
        async with running_ingest(broker.port, database, COLLECTOR_KEY) as (_, storage):
            # A marker published after the restart: once it is stored, anything the broker
            # had queued for this collector would have been delivered before it.
            await _publish_once(client, GATEWAY, [BLOCKS + 1])
            await wait_until(lambda: storage.stream(GATEWAY.gateway, "epoch-1"), bool)
    assert await _seqs(database) == [BLOCKS + 1]


async def test_an_offline_member_of_the_shared_group_still_takes_its_turn(
    broker: Broker, storage_urls: StorageUrls
) -> None:
    """Mosquitto 2.0 round-robins a shared subscription over its members' sessions, offline
    ones too: collector A, gone with its durable session kept (cancelled, no leave_on_stop),
    receives every second block when it comes back, although collector B was up the whole
    time. Each has its own database, to see who took what."""
    first, second = storage_urls.new("a"), storage_urls.new("b")
    for database in (first, second):
        await _registered(database)
    async with running_ingest(
        broker.port, first, COLLECTOR_KEY, client_id="gz-collector-a", clean_stop=False
    ):
        pass  # gone, its session kept, as after a SIGKILL or a network cut (a plain DISCONNECT)
    async with running_ingest(broker.port, second, COLLECTOR_KEY, client_id="gz-collector-b"):
        async with _publisher(broker) as client:
            await _publish_once(client, GATEWAY, range(1, BLOCKS + 1))
        # Every block was routed when its PUBACK came: B got its share, A's waits in its queue.
        async with running_ingest(broker.port, first, COLLECTOR_KEY, client_id="gz-collector-a"):

            async def both() -> int:
                return len(await _seqs(first)) + len(await _seqs(second))

            await wait_until(both, lambda count: count == BLOCKS)
    a_seqs, b_seqs = set(await _seqs(first)), set(await _seqs(second))
    assert a_seqs | b_seqs == set(range(1, BLOCKS + 1))
    assert not a_seqs & b_seqs
    assert len(a_seqs) == len(b_seqs) == BLOCKS // 2


@contextlib.asynccontextmanager
async def _member_b_running(
    broker: Broker, storage_urls: StorageUrls
) -> AsyncIterator[tuple[str, str, Storage]]:
    """A's and B's databases (the gateway registered in each), and B's live storage while B
    runs as a member of the group that leaves it at its stop."""
    first, second = storage_urls.new("a"), storage_urls.new("b")
    for database in (first, second):
        await _registered(database)
    async with running_ingest(
        broker.port, second, COLLECTOR_KEY, client_id="gz-collector-b", leave_on_stop=True
    ) as (_, live):
        yield first, second, live


async def test_a_member_stopped_cleanly_ends_its_session_and_the_live_one_takes_every_block(
    broker: Broker, storage_urls: StorageUrls
) -> None:
    """With `leave_on_stop`, a clean stop ends the durable session (DISCONNECT, Expiry 0): the
    group's blocks go to the members still running at once, none waits in the stopped one's
    queue for the agents' resend. Before the fix B stored 15 of 30 and A's queue held 15."""
    async with _member_b_running(broker, storage_urls) as (first, second, live):
        async with running_ingest(
            broker.port, first, COLLECTOR_KEY, client_id="gz-collector-a", leave_on_stop=True
        ):
            pass  # a member stopped for good: `ingest.leave_on_stop`, then SIGTERM
        async with _publisher(broker) as client:
            await _publish_once(client, GATEWAY, range(1, BLOCKS + 1))
        await _stored(live, BLOCKS)  # a generous deadline; the count is what is asserted
    assert await _seqs(second) == list(range(1, BLOCKS + 1))
    # Nothing waits in a session of A's: started again under its id (clean start off), it finds
    # no queue; a marker published now is stored by it alone (B has left the group too).
    async with running_ingest(broker.port, first, COLLECTOR_KEY, client_id="gz-collector-a"):
        async with _publisher(broker) as client:
            await _publish_once(client, GATEWAY, [BLOCKS + 1])
        await wait_until(lambda: _seqs(first), lambda seqs: BLOCKS + 1 in seqs, timeout=30)
    assert await _seqs(first) == [BLOCKS + 1]


async def test_a_member_stopped_for_good_in_its_subscribes_ends_its_session_too(
    broker: Broker, storage_urls: StorageUrls, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review (stop_in_subscribe.py): a `leave_on_stop` stop while a SUBACK was awaited (or
    seen by the check right after the subscribes) ended with a plain DISCONNECT, and the
    durable session kept A's `$share` subscription: B stored every other block (acked through
    1 after 30 s), A's queue held the rest. Now 30 of 30."""
    async with _member_b_running(broker, storage_urls) as (first, second, live):
        subscribed_once = asyncio.Event()
        subscribe = CancelSafeClient.subscribe

        async def slow_subscribe(self: CancelSafeClient, *args: Any, **kwargs: Any) -> Any:
            granted = await subscribe(self, *args, **kwargs)  # the group's, then the status'
            subscribed_once.set()
            await asyncio.sleep(30)  # stands in for a SUBACK slow to come
            return granted

        monkeypatch.setattr(CancelSafeClient, "subscribe", slow_subscribe)
        async with open_storage(first) as storage:
            ingest = Ingest(
                IngestSettings(
                    "127.0.0.1", broker.port, client_id="gz-collector-a", leave_on_stop=True
                ),
                storage,
                COLLECTOR_KEY,
            )
            running = asyncio.create_task(ingest.run())
            await asyncio.wait_for(subscribed_once.wait(), 30)  # in the group, not yet up
            ingest.stop()  # as `collector serve` stops at SIGTERM
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
        monkeypatch.undo()
        async with _publisher(broker) as client:
            await _publish_once(client, GATEWAY, range(1, BLOCKS + 1))
        await _stored(live, BLOCKS)
    assert await _seqs(second) == list(range(1, BLOCKS + 1))
