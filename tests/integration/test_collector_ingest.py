"""Collector ingest against a real Mosquitto, on SQLite and PostgreSQL: store once, audit, ACK."""

from __future__ import annotations

import asyncio
import hashlib
import time

from collector.model import Reason
from collector.readmodel import EVERYTHING, ReadingFilter
from specs.block import block_hash
from specs.records import GapReason
from specs.signing import SigningKey
from specs.status import GatewayStatus
from tests.support.broker import Broker
from tests.support.collector_client import (
    foreign_key,
    gap_record,
    gateway_link,
    sim_gateway,
)
from tests.support.collector_env import (
    COLLECTOR_KEY,
    CollectorEnv,
    register,
    running_ingest,
    wait_until,
)


async def _readings(env: CollectorEnv) -> int:
    page = await env.storage.readings(EVERYTHING, ReadingFilter(), after=None, limit=10_000)
    return len(page.items)


async def test_valid_block_is_stored_once_and_acked(env: CollectorEnv) -> None:
    payload = await env.link.send(1)
    signed = await env.signed_ack()
    assert signed.ack.gateway == env.gateway.gateway
    assert (signed.ack.epoch, signed.ack.seq, signed.ack.acked_through) == ("epoch-1", 1, 1)
    assert signed.ack.missing == ()
    assert signed.signature.kid == env.collector.kid
    assert await _readings(env) == 1
    rows = await env.rows("SELECT payload, kid, sig FROM blocks")
    assert rows == [(payload, env.gateway.key.kid, env.gateway.key.sign(payload).sig)]
    state = await env.storage.stream(env.gateway.gateway, "epoch-1")
    assert state is not None
    assert (state.acked_through, state.max_seq) == (1, 1)


async def test_exact_duplicate_is_audited_stored_once_and_still_acked(env: CollectorEnv) -> None:
    payload = await env.link.send(1)
    await env.signed_ack()
    await env.link.publish(payload)
    again = await env.signed_ack()
    assert (again.ack.seq, again.ack.acked_through) == (1, 1)
    (row,) = await env.audited(Reason.DUPLICATE)
    assert row.gateway == env.gateway.gateway
    assert row.payload_hash == (await env.rows("SELECT hash FROM blocks"))[0][0]
    assert await _readings(env) == 1


async def test_same_seq_with_other_bytes_is_a_seq_conflict_answered_at_once(
    env: CollectorEnv,
) -> None:
    stored = await env.link.send(1)
    first = await env.ack()
    assert (first.acked_hash, first.conflict) == (block_hash(stored), False)
    # Validly signed, other content: an agent that re-sealed seq 1 (a restored outbox).
    other = await env.link.send(1, records=[env.gateway.reading(1, 7)])
    conflict = await env.ack()
    (row,) = await env.audited(Reason.SEQ_CONFLICT)
    assert "epoch epoch-1 seq 1" in row.detail
    # The ACK names the seq, but says conflict, and the stored hash is not the agent's.
    assert (conflict.seq, conflict.acked_through, conflict.conflict) == (1, 1, True)
    assert conflict.acked_hash == block_hash(stored) != block_hash(other)
    # The flag stays with the stream: the agent's next block (chained onto its own seq 1)
    # is stored, breaks the chain, and its ACK says conflict too.
    await env.link.send(2)
    after = await env.ack()
    assert (after.seq, after.acked_through, after.conflict) == (2, 2, True)
    (broken,) = await env.audited(Reason.CHAIN_BREAK)
    assert f"seq 2 has prev {block_hash(other)}" in broken.detail
    assert await env.rows("SELECT value FROM readings ORDER BY seq") == [(1.0,), (2.0,)]
    state = await env.storage.stream(env.gateway.gateway, "epoch-1")
    assert state is not None
    hashes = await env.rows("SELECT hash FROM blocks ORDER BY seq")
    assert (state.conflict, state.acked_hash) == (True, hashes[1][0])


async def test_out_of_order_seqs_report_the_hole_until_it_fills(env: CollectorEnv) -> None:
    await env.link.send(1)
    assert (await env.ack()).acked_through == 1
    await env.link.send(3)
    after_three = await env.ack()
    assert (after_three.seq, after_three.acked_through, after_three.missing) == (3, 1, ((2, 2),))
    assert await env.rows("SELECT from_seq, to_seq FROM gaps WHERE kind = 'sequence'") == [(2, 2)]
    await env.link.send(2)
    after_two = await env.ack()
    assert (after_two.seq, after_two.acked_through, after_two.missing) == (2, 3, ())
    assert await env.rows("SELECT count(*) FROM gaps WHERE kind = 'sequence'") == [(0,)]


async def test_a_block_that_does_not_chain_onto_its_stored_successor_is_a_chain_break(
    env: CollectorEnv,
) -> None:
    await env.link.send(1)
    third = await env.link.send(3)  # chains onto the default block 2
    assert (await env.ack()).conflict is False
    assert (await env.ack()).conflict is False
    # Block 2 arrives with other content: the stored 3 does not chain onto it.
    second = await env.link.send(2, records=[env.gateway.reading(2, 4)])
    ack = await env.ack()
    assert (ack.seq, ack.acked_through, ack.missing, ack.conflict) == (2, 3, (), True)
    assert ack.acked_hash == block_hash(third)
    (row,) = await env.audited(Reason.CHAIN_BREAK)
    assert row.payload_hash == block_hash(second)
    assert f"not the hash {block_hash(second)} of the stored seq 2" in row.detail
    assert await env.rows("SELECT count(*) FROM blocks") == [(3,)]  # every block stays stored


async def test_foreign_key_is_unknown(env: CollectorEnv) -> None:
    payload = env.gateway.block(1)
    await env.link.publish(payload, env.gateway.sign(payload, foreign_key()))
    (row,) = await env.audited(Reason.UNKNOWN_KEY)
    assert row.topic == env.gateway.topics.block
    assert await _readings(env) == 0


async def test_another_gateways_key_is_not_owned(env: CollectorEnv) -> None:
    other = sim_gateway(2)
    await register(env.storage, other)
    payload = env.gateway.block(1)
    await env.link.publish(payload, env.gateway.sign(payload, other.key))
    await env.audited(Reason.KEY_NOT_OWNED)
    assert await _readings(env) == 0


async def test_one_changed_byte_is_a_bad_signature(env: CollectorEnv) -> None:
    payload = env.gateway.block(1)
    properties = env.gateway.sign(payload)
    tampered = payload.replace(b'"value":1.0', b'"value":7.0')
    assert tampered != payload
    await env.link.publish(tampered, properties)
    (row,) = await env.audited(Reason.BAD_SIGNATURE)
    assert row.payload_hash == hashlib.sha256(tampered).hexdigest()
    assert await env.rows("SELECT count(*) FROM blocks") == [(0,)]


async def test_malformed_json_is_audited(env: CollectorEnv) -> None:
    payload = b'{"spec": "gz/1", "seq": '
    await env.link.publish(payload, env.gateway.sign(payload))
    (row,) = await env.audited(Reason.MALFORMED)
    assert "JSON" in row.detail


async def test_payload_naming_another_place_is_a_topic_mismatch(env: CollectorEnv) -> None:
    payload = env.gateway.block(1, header={"district": "110101"})
    await env.link.publish(payload, env.gateway.sign(payload))
    (row,) = await env.audited(Reason.TOPIC_MISMATCH)
    assert "district" in row.detail


async def test_revoked_key_is_rejected(env: CollectorEnv) -> None:
    await env.link.send(1)
    await env.signed_ack()
    revoked = await env.storage.revoke(env.gateway.gateway, None, at=1.0)
    assert revoked == (env.gateway.key.kid,)
    await env.link.send(2)
    await env.audited(Reason.REVOKED_KEY)
    assert await _readings(env) == 1


async def test_gap_records_are_stored_with_the_block(env: CollectorEnv) -> None:
    gateway = env.gateway
    restored = gap_record(1, None, GapReason.OUTBOX_RESTORED, epoch="old", from_seq=9, point=None)
    await env.link.send(
        1,
        records=[gateway.reading(1), gap_record(1, lost=4), gateway.reading(1, 2), restored],
    )
    await env.signed_ack()
    assert await env.rows(
        "SELECT epoch, seq, idx, reason, lost, point, t_to - t_from, declared_epoch, from_seq,"
        " to_seq FROM gaps WHERE kind = 'record' ORDER BY idx",
    ) == [
        ("epoch-1", 1, 1, "disk_full", 4, "T001-LT-01", 9.0, None, None, None),
        ("epoch-1", 1, 3, "outbox_restored", None, None, 9.0, "old", 9, None),
    ]
    assert await env.rows("SELECT idx FROM readings ORDER BY idx") == [(0,), (2,)]


async def test_a_burst_is_stored_in_batches_and_every_block_acked(env: CollectorEnv) -> None:
    count = 120
    for seq in range(count, 0, -1):  # worst order: every block but the last opens a hole
        await env.link.send(seq)
    acks = [await env.signed_ack() for _ in range(count)]
    assert sorted(a.ack.seq or 0 for a in acks) == list(range(1, count + 1))
    assert max(a.ack.acked_through for a in acks) == count
    # Blocks that chain, in whatever order they come, raise no conflict.
    assert not any(a.ack.conflict for a in acks)
    assert await env.storage.audit(reason=Reason.CHAIN_BREAK) == ()
    assert await _readings(env) == count
    assert await env.rows("SELECT count(*) FROM gaps WHERE kind = 'sequence'") == [(0,)]


async def test_signed_status_messages_update_the_gateway(env: CollectorEnv) -> None:
    topic = env.gateway.topics.status
    heartbeat = GatewayStatus(online=True, t=time.time(), epoch="e", last_seq=0, undelivered=0)
    await env.link.publish(heartbeat.encode(), topic=topic)

    async def view() -> bool | None:
        page = await env.storage.gateway_views(EVERYTHING, after=None, limit=10)
        return page.items[0].status_online

    assert await wait_until(view, lambda online: online is True)
    # Unsigned: audited and ignored, whatever it says.
    await env.link.publish(b'{"online": false, "t": 0}', [], topic=topic)

    assert len(await env.audited(Reason.BAD_SIGNATURE)) == 1
    assert await view() is True
    await env.link.publish(GatewayStatus(online=False, t=0.0).encode(), topic=topic)
    assert await wait_until(view, lambda online: online is False) is False


async def test_duplicates_across_a_collector_restart_are_still_acked(
    broker: Broker, storage_url: str
) -> None:
    """All ingest state is in the database: a new collector process dedupes and acks."""
    gateway = sim_gateway(3)
    key: SigningKey = COLLECTOR_KEY
    async with gateway_link(broker.port, gateway) as link:
        async with running_ingest(broker.port, storage_url, key) as (_, storage):
            await register(storage, gateway)
            first = await link.send(1)
            await link.send(3)
            assert (await link.next_ack()).ack.seq == 1
            assert (await link.next_ack()).ack.missing == ((2, 2),)
        async with running_ingest(broker.port, storage_url, key) as (_, storage):
            await link.publish(first)
            ack = await link.next_ack()
            assert (ack.ack.seq, ack.ack.acked_through, ack.ack.missing) == (1, 1, ((2, 2),))
            await link.send(2)
            assert (await link.next_ack()).ack.acked_through == 3
            assert len(await storage.audit(reason=Reason.DUPLICATE)) == 1


async def test_ingest_survives_a_broker_restart(broker: Broker, storage_url: str) -> None:
    gateway = sim_gateway(4)
    async with running_ingest(broker.port, storage_url, COLLECTOR_KEY) as (ingest, storage):
        await register(storage, gateway)
        broker.stop()

        async def subscribed() -> bool:
            return ingest.connected.is_set()

        await wait_until(subscribed, lambda up: not up)
        broker.start()
        await asyncio.wait_for(ingest.connected.wait(), 10)
        async with gateway_link(broker.port, gateway) as link:
            await link.send(1)
            assert (await link.next_ack()).ack.acked_through == 1
