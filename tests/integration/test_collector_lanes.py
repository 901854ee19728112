"""A live block overtakes a queued backlog at the collector (issue 11.3, G5), real broker.

The test plays a gateway back from an outage: while the collector is away (its durable session
keeps what arrives), it publishes a backlog of blocks marked `lane: backlog` (specs.lanes),
then one live block; then the collector comes back to all of them queued in that order.
The collector answers the live block before most of the backlog, and still stores, dedupes
and chain-checks every block of both lanes.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from collector.ingest.service import IngestSettings
from collector.model import Reason
from collector.storage import open_storage
from demo.broker import MOSQUITTO
from specs.block import block_hash
from specs.lanes import Lane, lane_properties
from specs.records import Record
from tests.support.broker import Broker, free_port, wait_for_port
from tests.support.collector_client import GatewayLink, gateway_link, sim_gateway
from tests.support.collector_env import COLLECTOR_KEY, register, running_ingest

pytestmark = pytest.mark.timeout(120)

BACKLOG = 100
READINGS = 200  # per block, as a 1,000-tag site seals them
BACKLOG_BATCH = IngestSettings("", 0).backlog_batch_max
DURABLE: dict[str, Any] = {"client_id": "collector-lanes", "session_expiry": 600.0}


async def _publish(link: GatewayLink, seq: int, lane: Lane | None) -> None:
    records: list[Record] = [
        link.gateway.reading(seq, point=f"T{i:03d}-LT-01") for i in range(READINGS)
    ]
    payload = link.gateway.block(seq, records=records, prev=link.prev(seq))
    link.sent[("epoch-1", seq)] = block_hash(payload)
    lanes = [] if lane is None else lane_properties(lane)
    await link.publish(payload, link.gateway.sign(payload) + lanes)


@dataclass
class DefaultInflightBroker(Broker):
    """Mosquitto with its default max_inflight_messages (20), as `collector broker-config`
    leaves it: it hands a client at most 20 unacknowledged QoS 1 messages unless the client's
    CONNECT asks for more (MQTT 5 Receive Maximum)."""

    def start(self) -> None:
        conf = self.workdir / "mosquitto-default.conf"
        conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "max_queued_messages 0\nlog_type error\nlog_type warning\n"
        )
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_port(self.port)


async def test_a_live_block_is_acked_before_a_queued_backlog(
    broker: Broker, storage_url: str
) -> None:
    await _live_overtakes_queued_backlog(broker.port, storage_url)


async def test_a_live_block_overtakes_a_backlog_the_broker_still_holds(
    tmp_path: Path, storage_url: str
) -> None:
    # The broker hands the collector 20 blocks at a time unless told otherwise: the live block
    # sat at the broker behind the rest of the backlog, where no lane can see it.
    broker = DefaultInflightBroker(port=free_port(), workdir=tmp_path)
    broker.start()
    try:
        await _live_overtakes_queued_backlog(broker.port, storage_url)
    finally:
        broker.stop()


async def _live_overtakes_queued_backlog(port: int, storage_url: str) -> None:
    gateway = sim_gateway(1)
    async with open_storage(storage_url) as storage:
        await register(storage, gateway)
        # A durable session, lost (not stopped, which would end it): what is published while
        # the collector is away waits for it at the broker, in order, as after a crash.
        async with running_ingest(
            port, storage_url, COLLECTOR_KEY, **DURABLE, storage=storage, clean_stop=False
        ):
            pass
        async with gateway_link(port, gateway) as link:
            for seq in range(1, BACKLOG + 1):
                await _publish(link, seq, Lane.BACKLOG)
            live = BACKLOG + 1
            await _publish(link, live, Lane.LIVE)
            async with running_ingest(port, storage_url, COLLECTOR_KEY, **DURABLE, storage=storage):
                order = [(await link.next_ack(timeout=60)).ack for _ in range(BACKLOG + 1)]
        ahead = [ack.seq for ack in order].index(live)
        # FIFO answered it last, after all 100; with lanes it waits for the batch in progress
        # and at most one more backlog batch.
        assert ahead <= 2 * BACKLOG_BATCH, (
            f"{ahead} backlog blocks were answered before the live one"
        )
        assert sorted(ack.seq or 0 for ack in order) == list(range(1, live + 1))
        assert max(ack.acked_through for ack in order) == live
        assert not any(ack.conflict for ack in order)
        assert await storage.audit(reason=Reason.CHAIN_BREAK) == ()
        assert await storage.audit(reason=Reason.DUPLICATE) == ()
