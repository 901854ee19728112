"""A block read to be sent that gives way to room-making before it is published is not sent.

The publisher reads a block (`Delivery.undelivered`, `Delivery.get`) and publishes it a few
awaits later (the publish pace, the mending of a later block of the chunk read). A seal on a
full outbox that makes room in between thins or drops the oldest undelivered blocks, and a
gap record it commits declares their seqs as ones that will never come (reliability.md, When
the outbox is full): the block then went out after that declaration. Here the seal is made
exactly there, from a hook on the real read, on a real outbox file at its 1 MiB budget, and
the blocks go through a real Mosquitto to a test link playing the collector.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path

import aiomqtt
import pytest

from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_reads import StoredBlock
from specs.records import GapReason
from tests.integration.test_outbox_declarations import MIB, _block, _gaps
from tests.integration.test_publisher import FakeCollectorLink
from tests.support.broker import Broker
from tests.support.outbox_site import T0
from tests.support.publisher_rig import GATEWAY_KEY, SITE, TOPICS, gateway_publisher

pytestmark = pytest.mark.timeout(120)

WINDOW = 4


def _declared(path: Path, seq: int) -> bool:
    """Whether `seq`'s row is gone and a thinned/outbox_full gap record declares it."""
    with closing(sqlite3.connect(path)) as db:
        if db.execute("SELECT 1 FROM blocks WHERE seq = ?", (seq,)).fetchone() is not None:
            return False
    spans = [*_gaps(path, GapReason.THINNED), *_gaps(path, GapReason.OUTBOX_FULL)]
    return any(low is not None and high is not None and low <= seq <= high for low, high in spans)


async def test_a_block_that_gave_way_after_it_was_read_is_not_published(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, GATEWAY_KEY, max_bytes=MIB) as outbox:
        for index in range(120):  # at the budget: thinned and dropped, nothing ACKed
            await outbox.seal(_block(index), now=T0 + index, clock_synced=True)

    async with open_outbox(path, SITE, GATEWAY_KEY, max_bytes=MIB) as outbox:
        read = outbox.delivery.undelivered
        gave_way: list[int] = []

        async def read_then_room_made(*, after: int, limit: int) -> list[StoredBlock]:
            """The real read; the first time, seals until its first block has given way."""
            chunk = await read(after=after, limit=limit)
            if chunk and not gave_way:
                first, index = chunk[0].seq, 1_000
                while not _declared(path, first):
                    assert index < 1_500, f"block {first} never gave way"
                    await outbox.seal(_block(index), now=T0 + index, clock_synced=True)
                    index += 1
                gave_way.append(first)
            return chunk

        monkeypatch.setattr(outbox.delivery, "undelivered", read_then_room_made)
        publisher = gateway_publisher(outbox, broker.port, ack_timeout=30, max_inflight=WINDOW)
        async with aiomqtt.Client(
            "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as client:
            await client.subscribe(TOPICS.block, qos=1)
            link = FakeCollectorLink(client, outbox.epoch)
            tasks = [asyncio.create_task(link.listen()), asyncio.create_task(publisher.run())]
            try:
                await link.wait_for(WINDOW)  # the backlog lane's window, unanswered
            finally:
                publisher.stop()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    (seq,) = gave_way
    # Before: it went first, after the gap record that declared it had been committed.
    assert seq not in link.received, f"{seq} was published after it gave way: {link.received}"
    assert link.received == sorted(link.received), link.received  # the rest, in order
