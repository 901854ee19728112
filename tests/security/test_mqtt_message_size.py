"""An MQTT message larger than any the agents send is refused unread, through a real Mosquitto.

Found by the hostile review: nothing bounded the size of what arrives on a gateway's `up/`
and `status` topics. Anyone who may publish there (on the production broker, one gateway's
certificate on its own topics) could send a message as large as MQTT allows (256 MiB); the
collector took it whole, verified it and parsed it, and a validly signed block of 16 MiB of
alarm text was stored as it came. Now a message over `ingest.max_message_bytes` (default
16 MiB, over 12 times the largest block an agent seals) is audited `too_large`, never
decoded, parsed or stored, and the gateway's real data goes on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable

import pytest

from collector.config import IngestConfig
from collector.model import AuditEntry, Reason
from specs.meta import PointMeta
from specs.records import AlarmEvent
from specs.status import GatewayStatus
from tests.support.broker import Broker
from tests.support.collector_client import BASE_TIME, GatewayLink, sim_gateway
from tests.support.collector_env import CollectorEnv, collector_env, wait_until
from tests.support.records import alarm_record

pytestmark = pytest.mark.timeout(120)

LIMIT = IngestConfig().max_message_bytes
VICTIM = sim_gateway(1)  # the gateway collector_env registers and links
Message = tuple[str, bytes, list[tuple[str, str]]]


@pytest.fixture
async def env(broker: Broker, storage_url: str) -> AsyncIterator[CollectorEnv]:
    async with collector_env(broker.port, storage_url) as running:
        yield running


def _padding() -> str:
    return "x" * LIMIT


def _block(_: GatewayLink) -> Message:
    # Validly signed by the registered gateway: before, it was verified, parsed and stored.
    raised = alarm_record("a-1", AlarmEvent.RAISE, BASE_TIME + 900)
    alarm = dataclasses.replace(raised, detail=_padding())
    payload = VICTIM.block(900, records=[alarm])
    return VICTIM.topics.block, payload, list(VICTIM.sign(payload))


def _meta(_: GatewayLink) -> Message:
    point = PointMeta("T001-LT-01", "WHP-LT", "m", _padding(), "plc", {})
    payload = VICTIM.meta([point])
    return VICTIM.topics.meta, payload, list(VICTIM.sign(payload))


def _status(_: GatewayLink) -> Message:
    status = GatewayStatus(online=True, t=BASE_TIME).encode()
    payload = status[:-1] + b',"pad":"' + _padding().encode() + b'"}'
    return VICTIM.topics.status, payload, list(VICTIM.sign(payload))


@pytest.mark.parametrize("oversized", [_block, _meta, _status], ids=["block", "meta", "status"])
async def test_a_message_over_the_limit_is_audited_too_large_and_the_data_goes_on(
    env: CollectorEnv, oversized: Callable[[GatewayLink], Message]
) -> None:
    await env.link.send(1)
    topic, payload, properties = oversized(env.link)
    assert len(payload) > LIMIT
    await env.link.publish(payload, properties, topic=topic)
    await env.link.send(2)

    acked = await wait_until(
        env.link.next_ack, lambda signed: signed.ack.acked_through == 2, timeout=30
    )
    assert acked.ack.acked_through == 2
    assert await env.rows("SELECT seq FROM blocks ORDER BY seq") == [(1,), (2,)]
    assert await env.rows("SELECT count(*) FROM metas") == [(0,)]

    async def audits() -> tuple[AuditEntry, ...]:
        rows: tuple[AuditEntry, ...] = await env.storage.audit(limit=100)
        return rows

    found = await wait_until(audits, lambda rows: len(rows) > 0)
    assert [(row.reason, row.topic, row.count) for row in found] == [(Reason.TOO_LARGE, topic, 1)]
    assert found[0].detail == (
        f"payload of {len(payload):,} bytes; at most {LIMIT:,} are taken (ingest.max_message_bytes)"
    )
