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

from collector.ingest.service import Ingest, IngestSettings
from collector.storage import open_storage
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


async def test_messages_waiting_for_a_busy_database_are_bounded_in_bytes(
    broker: Broker, tmp_path: Path
) -> None:
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
            audited = await _audited(url)
        finally:
            ingest.stop()
            await cancel_task(task)
    assert 0 < audited <= AT_MOST, f"{audited} of {SENT} 1 MiB messages were held"
