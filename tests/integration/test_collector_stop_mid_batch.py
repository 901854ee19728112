"""The ingest loop stops when cancelled, even when the cancellation lands inside a batch.

A cancellation inside an asyncpg transaction closes the connection, and the transaction's exit
then raises InterfaceError in place of CancelledError; the storage turned that into a
StorageError, and the loop's retry path went on ingesting. A `collector serve` stopped by
SIGTERM so kept retrying against its dropped database for minutes (found by the bench report's
collector runs). Here the loop is cancelled at many moments while a gateway floods it; each
cancellation must end the task within seconds. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import random

from collector.ingest.service import Ingest, IngestSettings
from collector.storage import open_storage
from specs.records import Quality, Reading, iso_time
from tests.support.broker import Broker
from tests.support.collector_client import BASE_TIME, gateway_link, sim_gateway
from tests.support.collector_env import COLLECTOR_KEY, register

ATTEMPTS = 20
STOP_WITHIN = 5.0
GW = sim_gateway(1)


def _records(seq: int) -> list[Reading]:
    t = iso_time(BASE_TIME + seq)
    return [
        Reading(f"T{point:03d}-LT-01", "WHP-LT", t, 1.0 + point / 1000, "m", Quality.GOOD)
        for point in range(200)
    ]


async def test_a_cancelled_ingest_stops_whatever_it_was_doing(
    broker: Broker, storage_url: str
) -> None:
    rng = random.Random(7)  # repeatable cancellation moments
    async with open_storage(storage_url) as storage:
        await register(storage, GW)
        async with gateway_link(broker.port, GW) as link:
            enough = asyncio.Event()

            async def flood() -> None:
                # Stopped between publishes, never cancelled inside one: aiomqtt waits for a
                # PUBACK with asyncio.wait_for, and a cancellation landing there on Python
                # 3.11 left the link stalled until the broker's keepalive (90 s) dropped it.
                seq = 1
                while not enough.is_set():
                    await link.send(seq, records=_records(seq))
                    seq += 1

            flooding = asyncio.create_task(flood())
            try:
                for attempt in range(ATTEMPTS):
                    settings = IngestSettings("127.0.0.1", broker.port, batch_max=50)
                    ingest = Ingest(settings, storage, COLLECTOR_KEY)
                    task = asyncio.create_task(ingest.run(), name=f"ingest-{attempt}")
                    await asyncio.wait_for(ingest.connected.wait(), 10)
                    await asyncio.sleep(rng.uniform(0.0, 0.3))
                    ingest.stop()  # what run_collector does before cancelling it
                    task.cancel()
                    done, _ = await asyncio.wait({task}, timeout=STOP_WITHIN)
                    assert done, f"attempt {attempt}: the ingest loop went on after cancel()"
            finally:
                enough.set()
                await flooding
