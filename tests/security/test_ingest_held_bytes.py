"""What the collector holds of messages it has not ingested yet is bounded in bytes too.

Found by the long-run hostile test: the ingest loop's queues were bounded in messages only
(10,000 in the MQTT client, as many again in the lanes), and a message may be as large as MQTT
allows (256 MiB). 400 unsigned 4 MB messages on a made-up gateway's block topic, sent faster
than a busy collector rejects them, took `collector serve` from 79 MiB to 1.6 GiB RSS, still
growing; anything that can publish on `up/` could do it (on the production broker, one
gateway's certificate on its own topics).

Here the database is held busy (another connection's write lock) while messages of 1 MiB
arrive, as a slow disk or a long retention run would; once it is free, the ingest must have
kept only what fits `incoming_bytes` (the rest was dropped at the client, for the agents to
resend, as past the message bound), so only those few are audited.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import aiomqtt
import pytest
from structlog.testing import capture_logs

from collector.ingest.service import Ingest, IngestSettings
from collector.storage import open_storage
from hostkit.mqtt_held import HeldBytes
from simulators.lifecycle import cancel_task
from tests.support.broker import Broker
from tests.support.collector_client import sim_gateway
from tests.support.collector_env import COLLECTOR_KEY, wait_until
from tests.support.postgres import sql_rows

MIB = 1024 * 1024
SENT = 40
HELD = 4 * MIB
# Held: up to HELD (the last message may cross it), plus the batch that waits for the lock.
AT_MOST = HELD // MIB + 2
FORGED = sim_gateway(900)  # registered nowhere: every message is refused (bad signature)


async def _audited(url: str) -> int:
    rows = await sql_rows(url, "SELECT coalesce(sum(count), 0) FROM audit")
    return int(rows[0][0])


async def _stalled_flood(broker: Broker, tmp_path: Path) -> int:
    """SENT messages of 1 MiB while the database is write-locked; how many were audited."""
    url = f"sqlite:///{tmp_path / 'collector.db'}"
    async with open_storage(url) as storage:
        settings = IngestSettings("127.0.0.1", broker.port, incoming_bytes=HELD)
        ingest = Ingest(settings, storage, COLLECTOR_KEY)
        task = asyncio.create_task(ingest.run(), name="ingest")
        try:
            await asyncio.wait_for(ingest.connected.wait(), 10)
            busy = sqlite3.connect(tmp_path / "collector.db", isolation_level=None)
            busy.execute("BEGIN IMMEDIATE")  # the ingest's next write waits (busy_timeout)
            try:
                async with aiomqtt.Client("127.0.0.1", broker.port) as sender:
                    for index in range(SENT):
                        payload = bytes([index]) * MIB
                        await sender.publish(FORGED.topics.block, payload, qos=1)
                await asyncio.sleep(1.0)  # the broker hands them on to the stalled ingest
            finally:
                busy.execute("ROLLBACK")
                busy.close()
            await wait_until(lambda: _audited(url), lambda n: n > 0)
            await asyncio.sleep(1.0)  # whatever was held is audited by now
            return await _audited(url)
        finally:
            ingest.stop()
            await cancel_task(task)


async def test_messages_waiting_for_a_busy_database_are_bounded_in_bytes(
    broker: Broker, tmp_path: Path
) -> None:
    audited = await _stalled_flood(broker, tmp_path)
    assert 0 < audited <= AT_MOST, f"{audited} of {SENT} 1 MiB messages were held"


async def test_dropped_messages_are_counted_in_one_log_line_a_minute(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """aiomqtt logged 'Message queue is full. Discarding message.' for each message dropped:
    20,000 junk messages to a real `collector serve` wrote 3,349 such lines. The drops of a
    minute are one `incoming_messages_dropped` line now: the first drop says so at once, and
    the count of the rest is said when the minute is over, or here, when the session ends.

    The count used to wait for the next drop: a burst in one minute was logged as
    `messages=1`, and the rest of it were never said if no message was dropped later."""
    with capture_logs() as events:
        audited = await _stalled_flood(broker, tmp_path)
    per_message = [r for r in caplog.records if "queue is full" in r.getMessage()]
    dropped = [e for e in events if e["event"] == "incoming_messages_dropped"]
    assert audited < SENT  # some were dropped
    assert len(per_message) == 0
    assert [e["messages"] for e in dropped] == [1, SENT - audited - 1]
    assert sum(e["bytes"] for e in dropped) == (SENT - audited) * MIB + _topic_bytes(SENT - audited)


def _topic_bytes(messages: int) -> int:
    return messages * len(FORGED.topics.block)


def _message(topic: str, payload: bytes) -> aiomqtt.Message:
    return aiomqtt.Message(topic, payload, qos=1, retain=False, mid=1, properties=None)


async def test_a_burst_of_drops_is_counted_in_full_when_its_minute_is_over(broker: Broker) -> None:
    """Through a real broker to a client that does not read: 3 messages of 403 bytes fill a
    budget of 1000, and the 17 after them are dropped in a burst. The first drop is logged at
    once, the other 16 in one line when the minute (here 1 s) is over, with no drop after."""
    held = HeldBytes(1000, every=1.0)
    with capture_logs() as events:
        async with (
            aiomqtt.Client("127.0.0.1", broker.port, queue_type=held.queue_type()) as receiver,
            aiomqtt.Client("127.0.0.1", broker.port) as sender,
        ):
            await receiver.subscribe("t/x", qos=1)
            for _ in range(20):
                await sender.publish("t/x", bytes(400), qos=1)

            async def lines() -> list[int]:
                return [e["messages"] for e in events if e["event"] == "incoming_messages_dropped"]

            counts = await wait_until(lines, lambda counts: sum(counts) >= 17, timeout=30)
    assert counts == [1, 16]
    assert held.held == 3 * 403
