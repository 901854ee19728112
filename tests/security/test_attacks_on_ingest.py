"""Attacks on the collector while a gateway's real data flows, through a real Mosquitto.

Each attack is a message an intruder able to publish could send: forged, modified, replayed,
on the wrong topic, with the wrong algorithm, signed by a revoked key, an unsigned or replayed
status. Each must be rejected and audited with its own reason; none may stop the ingest or
change what the real gateway's blocks store.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Callable

import aiomqtt
import pytest

from collector.model import AuditEntry, Reason
from collector.readmodel import EVERYTHING, ReadingFilter
from specs.meta import PointMeta
from specs.records import AlarmEvent
from specs.status import GatewayStatus
from tests.support.broker import Broker
from tests.support.collector_client import (
    BASE_TIME,
    GatewayLink,
    foreign_key,
    publish_properties,
    sim_gateway,
)
from tests.support.collector_env import CollectorEnv, collector_env, register, wait_until
from tests.support.records import alarm_record

pytestmark = pytest.mark.timeout(120)

LIVE_BLOCKS = 17
NEIGHBOUR = sim_gateway(2)
RETIRED = sim_gateway(3)


@pytest.fixture
async def env(broker: Broker, storage_url: str) -> AsyncIterator[CollectorEnv]:
    async with collector_env(broker.port, storage_url) as running:
        await register(running.storage, NEIGHBOUR)
        await register(running.storage, RETIRED)
        assert await running.storage.revoke(RETIRED.gateway, None, at=1.0) == (RETIRED.key.kid,)
        yield running


def _with(properties: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(key, value if key == name else old) for key, old in properties]


Message = tuple[str, bytes, list[tuple[str, str]]]
"""(topic, payload, user properties) as an intruder publishes them."""
VICTIM = sim_gateway(1)  # the gateway collector_env registers and links
ELSEWHERE = VICTIM.block(900)  # a block the victim never sent, validly signed by tests below


def _forged(link: GatewayLink) -> Message:
    return link.gateway.topics.block, ELSEWHERE, list(VICTIM.sign(ELSEWHERE, foreign_key()))


def _modified(link: GatewayLink) -> Message:
    changed = ELSEWHERE.replace(b'"value":900.0', b'"value":0.5')
    return link.gateway.topics.block, changed, list(VICTIM.sign(ELSEWHERE))


def _replayed(link: GatewayLink) -> Message:
    # Block 1 again, exactly as sent: stored once, audited, answered again.
    payload = VICTIM.block(1, prev=link.prev(1))
    return VICTIM.topics.block, payload, list(VICTIM.sign(payload))


def _wrong_topic(_: GatewayLink) -> Message:
    # The victim's own signed block, published as if it were the neighbour's.
    return NEIGHBOUR.topics.block, ELSEWHERE, list(VICTIM.sign(ELSEWHERE))


def _wrong_place(_: GatewayLink) -> Message:
    payload = VICTIM.block(901, header={"enterprise": NEIGHBOUR.enterprise})
    return VICTIM.topics.block, payload, list(VICTIM.sign(payload))


def _duplicate_keys(_: GatewayLink) -> Message:
    # Validly signed bytes that say two things: a parser taking the first "value" reads 900.0,
    # one taking the last (Python's json) reads 0.5. Canonical JSON never repeats a key.
    payload = ELSEWHERE.replace(b'"value":900.0', b'"value":900.0,"value":0.5')
    return VICTIM.topics.block, payload, list(VICTIM.sign(payload))


def _nul_in_a_block(_: GatewayLink) -> Message:
    # PostgreSQL's text holds no NUL: such a block failed every batch it was in, audited
    # nowhere and resent by its agent until someone noticed.
    alarm = alarm_record("a\x00", AlarmEvent.RAISE, BASE_TIME + 902)
    payload = VICTIM.block(902, records=[alarm])
    return VICTIM.topics.block, payload, list(VICTIM.sign(payload))


def _nul_in_a_meta(_: GatewayLink) -> Message:
    point = PointMeta("T001-LT-01", "WHP-LT", "m", "tank 1\x00", "plc", {})
    payload = VICTIM.meta([point])
    return VICTIM.topics.meta, payload, list(VICTIM.sign(payload))


# 3,200 characters no compression shortens: a PostgreSQL index entry holds at most 2,704 bytes.
LONG_ID = "".join(hashlib.sha256(b"%d" % n).hexdigest() for n in range(50))


def _long_epoch(_: GatewayLink) -> Message:
    # Failed every batch it was in on PostgreSQL ('index row size 3248 exceeds btree version 4
    # maximum 2704 for index "blocks_pkey"'), audited nowhere, resent by its agent for good.
    payload = VICTIM.block(1, epoch=LONG_ID)
    return VICTIM.topics.block, payload, list(VICTIM.sign(payload))


def _long_point_in_a_meta(_: GatewayLink) -> Message:
    point = PointMeta(LONG_ID, "WHP-LT", "m", "tank 1", "plc", {})
    payload = VICTIM.meta([point])
    return VICTIM.topics.meta, payload, list(VICTIM.sign(payload))


def _wrong_alg(_: GatewayLink) -> Message:
    properties = _with(list(VICTIM.sign(ELSEWHERE)), "alg", "rsa-sha256")
    return VICTIM.topics.block, ELSEWHERE, properties


def _alg_mismatch(_: GatewayLink) -> Message:
    # An Ed25519 signature claimed as SM2: the registered key's algorithm decides.
    properties = _with(list(VICTIM.sign(ELSEWHERE)), "alg", "sm2-sm3")
    return VICTIM.topics.block, ELSEWHERE, properties


def _revoked_key(_: GatewayLink) -> Message:
    payload = RETIRED.block(1)
    return RETIRED.topics.block, payload, list(RETIRED.sign(payload))


def _unsigned_status(_: GatewayLink) -> Message:
    return VICTIM.topics.status, b'{"online": true, "t": 0}', []


def _replayed_status(_: GatewayLink) -> Message:
    recorded = GatewayStatus(online=True, t=time.time() - 3600).encode()
    return VICTIM.topics.status, recorded, list(VICTIM.sign(recorded))


ATTACKS: tuple[tuple[Callable[[GatewayLink], Message], Reason], ...] = (
    (_forged, Reason.UNKNOWN_KEY),
    (_modified, Reason.BAD_SIGNATURE),
    (_replayed, Reason.DUPLICATE),
    (_wrong_topic, Reason.KEY_NOT_OWNED),
    (_wrong_place, Reason.TOPIC_MISMATCH),
    (_duplicate_keys, Reason.MALFORMED),
    (_nul_in_a_block, Reason.MALFORMED),
    (_nul_in_a_meta, Reason.MALFORMED),
    (_long_epoch, Reason.MALFORMED),
    (_long_point_in_a_meta, Reason.MALFORMED),
    (_wrong_alg, Reason.BAD_ALGORITHM),
    (_alg_mismatch, Reason.BAD_ALGORITHM),
    (_revoked_key, Reason.REVOKED_KEY),
    (_unsigned_status, Reason.BAD_SIGNATURE),
    (_replayed_status, Reason.STALE_STATUS),
)


async def test_every_attack_is_audited_with_its_reason_and_the_real_data_goes_on(
    env: CollectorEnv,
) -> None:
    expected: dict[Reason, int] = {}
    for seq in range(1, LIVE_BLOCKS + 1):
        await env.link.send(seq)
        if seq <= len(ATTACKS):
            attack, reason = ATTACKS[seq - 1]
            topic, payload, properties = attack(env.link)
            await env.link.publish(payload, properties, topic=topic)
            expected[reason] = expected.get(reason, 0) + 1

    async def acked_through() -> int:
        while True:
            signed = await env.link.next_ack()
            if signed.ack.acked_through == LIVE_BLOCKS:
                return LIVE_BLOCKS

    assert await asyncio.wait_for(acked_through(), 30) == LIVE_BLOCKS

    async def audits() -> dict[Reason, int]:
        rows: tuple[AuditEntry, ...] = await env.storage.audit(limit=10_000)
        counted: dict[Reason, int] = {}
        for row in rows:
            counted[row.reason] = counted.get(row.reason, 0) + row.count
        return counted

    found = await wait_until(
        audits, lambda got: all(got.get(r, 0) >= n for r, n in expected.items()), timeout=20
    )
    assert {reason: found.get(reason, 0) for reason in expected} == expected
    # Only the real blocks are stored, each once, every reading of them.
    assert await env.rows("SELECT count(*) FROM blocks") == [(LIVE_BLOCKS,)]
    page = await env.storage.readings(EVERYTHING, ReadingFilter(), after=None, limit=1000)
    values = sorted(r.value or 0.0 for r in page.items)
    assert values == [float(seq) for seq in range(1, LIVE_BLOCKS + 1)]
    assert {r.gateway for r in page.items} == {env.gateway.gateway}


FLOOD = 10_000
BIG = 5 * 1024 * 1024


async def test_a_flood_and_a_5_mb_payload_do_not_delay_the_real_data(
    env: CollectorEnv, broker: Broker
) -> None:
    """10,000 garbage messages and one 5 MB payload, while the gateway sends a block a tenth
    of a second: every real block is acknowledged without the agent's resend (its ACK timeout
    is 30 s), so stored when it should be, and stored once."""
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, identifier="intruder", protocol=aiomqtt.ProtocolVersion.V5
    ) as intruder:

        async def flood() -> None:
            topic = env.gateway.topics.block
            junk = publish_properties([("alg", "ed25519"), ("kid", "0" * 16), ("sig", "AA==")])
            await intruder.publish(topic, b"x" * BIG, qos=1, properties=junk)
            for index in range(FLOOD):
                await intruder.publish(topic, b"garbage %d" % index, qos=1, properties=junk)

        async def live(flooding: asyncio.Task[None]) -> int:
            """Blocks 1, 2, ... until the flood is over: each ACKed before the agent's resend."""
            seq = 0
            while not flooding.done() or seq < LIVE_BLOCKS:
                seq += 1
                await env.link.send(seq)
                signed = await env.link.next_ack(timeout=30)
                assert signed.ack.seq == seq
                await asyncio.sleep(0.1)
            return seq

        flooding = asyncio.create_task(flood())
        sent = await live(flooding)
        await flooding
    assert await env.rows("SELECT count(*) FROM blocks") == [(sent,)]

    async def rejected() -> dict[Reason, int]:
        counted: dict[Reason, int] = {}
        for row in await env.storage.audit(limit=10_000):
            counted[row.reason] = counted.get(row.reason, 0) + row.count
        return counted

    # Every piece of garbage is counted, in a bounded number of rows (tests/security/
    # test_audit_flood.py bounds them), and nothing else was rejected.
    counted = await wait_until(rejected, lambda got: sum(got.values()) > FLOOD, timeout=30)
    assert counted == {Reason.BAD_SIGNATURE: FLOOD + 1}
