"""An upgrade past b28c625 (api.listen in the default client id) on a real Mosquitto.

The collector of the old version left a durable session under its old default id, subscribed
to the shared group; the new one connects under its new id. Before, the broker went on handing
the old session every other block (queued there until `session_expiry`, a day): 20 blocks
published once, 10 stored. Now the collector retires that session at its start.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, Final

import aiomqtt
import pytest
import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from structlog.testing import capture_logs

from collector.config import CollectorConfig, legacy_client_id, load_collector_config
from collector.legacy_session import LegacySession, session_present_at_end
from collector.runtime import run_collector
from specs.topics import collector_subscription
from tests.support.broker import Broker
from tests.support.collector_client import SimGateway, publish_properties, sim_gateway
from tests.support.collector_env import keyed_collector_config, register, wait_until

GATEWAYS: Final = tuple(sim_gateway(serial) for serial in range(400, 420))
TOKENS: Final = (("province", "s3cret", ("*",)),)
WAIT: Final = 15.0  # generous: every block is stored at once, or waits a day for a resend
GROUP: Final = "gz-collectors"


@pytest.fixture
async def config(broker: Broker, tmp_path: Path) -> CollectorConfig:
    path = await keyed_collector_config(
        tmp_path,
        broker_port=broker.port,
        tokens=TOKENS,
        storage_url=f"sqlite:///{tmp_path}/collector.db",
    )
    return load_collector_config(path)


def _legacy(config: CollectorConfig) -> LegacySession:
    legacy = legacy_client_id(socket.gethostname(), config)
    return LegacySession(config.broker.host, config.broker.port, None, legacy)


async def _leave_old_session(session: LegacySession) -> None:
    """What the old version left: a durable session in the group, ended by a plain DISCONNECT."""
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 86400
    async with aiomqtt.Client(
        session.host,
        session.port,
        identifier=session.client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=props,
    ) as old:
        await old.subscribe(collector_subscription(GROUP), qos=1)


async def _publish_once(port: int, gateways: tuple[SimGateway, ...]) -> None:
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier="publisher", protocol=aiomqtt.ProtocolVersion.V5
    ) as client:
        for gateway in gateways:
            payload = gateway.block(1)
            props = publish_properties(gateway.sign(payload))
            await client.publish(gateway.topics.block, payload, qos=1, properties=props)


async def test_an_upgraded_collector_retires_its_legacy_session_and_stores_every_block(
    broker: Broker, config: CollectorConfig
) -> None:
    legacy = _legacy(config)
    await _leave_old_session(legacy)
    with capture_logs() as logs:
        async with run_collector(config) as running:
            await asyncio.wait_for(running.wait_connected(), WAIT)
            await register(running.storage, *GATEWAYS)
            await _publish_once(broker.port, GATEWAYS)

            async def count() -> int:
                states = [await running.storage.stream(g.gateway, "epoch-1") for g in GATEWAYS]
                return sum(state is not None for state in states)

            try:
                await wait_until(count, lambda n: n == len(GATEWAYS), timeout=WAIT)
            finally:
                print(f"stored {await count()} of {len(GATEWAYS)} published once")
    (retired,) = [line for line in logs if line["event"] == "legacy_session_retired"]
    assert retired["client_id"] == legacy.client_id
    assert retired["session_present"] is True
    assert await session_present_at_end(legacy) is False


async def test_a_collector_with_its_own_client_id_leaves_the_legacy_session_alone(
    broker: Broker, config: CollectorConfig
) -> None:
    legacy = _legacy(config)
    await _leave_old_session(legacy)
    own = config.model_copy(
        update={"ingest": config.ingest.model_copy(update={"client_id": "gz-collector-own"})}
    )
    with capture_logs() as logs:
        async with run_collector(own) as running:
            await asyncio.wait_for(running.wait_connected(), WAIT)
    assert not [line for line in logs if line["event"].startswith("legacy_session")]
    assert await session_present_at_end(legacy) is True


async def test_a_broker_down_at_the_start_holds_nothing_up_and_the_retirement_follows(
    broker: Broker, config: CollectorConfig
) -> None:
    broker.stop()
    # legacy_session_absent is a debug event (tests/conftest.py puts structlog back afterwards)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    with capture_logs() as logs:
        async with run_collector(config) as running:

            async def legacy_events() -> list[str]:
                return [line["event"] for line in logs if line["event"].startswith("legacy")]

            events = await wait_until(legacy_events, bool, timeout=WAIT)
            assert events == ["legacy_session_not_retired"]
            await asyncio.to_thread(broker.start)
            await asyncio.wait_for(running.wait_connected(), WAIT)

            async def ended() -> list[MutableMapping[str, Any]]:
                return [line for line in logs if line["event"] == "legacy_session_absent"]

            (line,) = await wait_until(ended, bool, timeout=WAIT)
    assert line["client_id"] == _legacy(config).client_id
    # a broker restart without persistence ended the session: nothing was retired
    assert await legacy_events() == ["legacy_session_not_retired", "legacy_session_absent"]
