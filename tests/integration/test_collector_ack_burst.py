"""A batch that answers many gateways at once publishes its ACKs without a warning per ACK.

At 1,000 gateways (bench/load.py) a batch carries blocks of a hundred gateways or more and the
collector publishes their ACKs concurrently; aiomqtt warns "There are N pending publish calls"
for each publish past its threshold (10), so the collector logged a warning per ACK: 700 KB of
log per collector in two minutes of the load bench.
"""

from __future__ import annotations

import logging

import aiomqtt
import pytest

from collector.storage import open_storage
from tests.support.broker import Broker
from tests.support.collector_client import publish_properties, sim_gateway
from tests.support.collector_env import COLLECTOR_KEY, register, running_ingest, wait_until

GATEWAYS = [sim_gateway(serial) for serial in range(100, 140)]
DURABLE = "gz-collector-burst-test"


async def test_acks_of_one_batch_for_many_gateways_log_no_warning_each(
    broker: Broker, storage_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with open_storage(storage_url) as storage:
        await register(storage, *GATEWAYS)
    async with running_ingest(
        broker.port, storage_url, COLLECTOR_KEY, client_id=DURABLE, clean_stop=False
    ):
        pass  # lost, not stopped: the broker keeps the session, what follows waits in its queue
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, identifier="burst", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        for gateway in GATEWAYS:
            payload = gateway.block(1)
            await client.publish(
                gateway.topics.block,
                payload,
                qos=1,
                properties=publish_properties(gateway.sign(payload)),
            )
    caplog.set_level(logging.WARNING, logger="mqtt")
    async with running_ingest(broker.port, storage_url, COLLECTOR_KEY, client_id=DURABLE) as (
        _,
        storage,
    ):

        async def acked() -> int:
            states = [await storage.stream(g.gateway, "epoch-1") for g in GATEWAYS]
            return sum(1 for s in states if s is not None and s.acked_through == 1)

        await wait_until(acked, lambda n: n == len(GATEWAYS))
    pending = [r.getMessage() for r in caplog.records if "pending publish calls" in r.getMessage()]
    assert pending == []
