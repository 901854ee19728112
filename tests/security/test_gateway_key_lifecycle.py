"""A gateway's keys over their life at the collector: announced, overlapping, retired, revoked.

The next key travels in a `key` record of a block signed by the current key. Once that block
is stored, both keys sign for the overlap window; then the old key is retired (`retired_key`).
A revoked key signs nothing from its revocation on (`revoked_key`), a replay of a block it
signed earlier included. Every key the gateway ever had is kept, so whatever was stored stays
verifiable. A key record that does not hold up is audited and taken by nobody. Storage-level,
on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence

import pytest

from collector.ingest.core import Inbound, build_acks, plan_batch
from collector.model import BatchResult, IngestBatch, Outcome, Reason
from collector.readmodel import EVERYTHING
from collector.storage import open_storage
from collector.storage.base import Storage
from collector.verify.service import verify_stored
from specs.ack import decode_ack
from specs.block import GENESIS, block_hash
from specs.catalogue import default_catalogue
from specs.records import KeyRecord, Record, iso_time
from specs.signing import SigningKey, generate_signing_key, signing_key_from_seed
from tests.support.collector_client import BASE_TIME, sim_gateway
from tests.support.collector_env import register

GW = sim_gateway(41)
OTHER = sim_gateway(42)
OLD = GW.key
NEW = signing_key_from_seed(b"gateway-41-next-key-for-rotation")
COLLECTOR = signing_key_from_seed(b"collector-41-key-for-the-acks---")
HOUR = 3600.0


def announcement(new: SigningKey = NEW, replaces: str = OLD.kid, **changes: str) -> KeyRecord:
    record = KeyRecord(
        t=iso_time(BASE_TIME),
        kid=new.kid,
        alg=new.alg,
        public_key=new.public().public_pem().decode(),
        replaces=replaces,
    )
    return dataclasses.replace(record, **changes)


class Chain:
    """The gateway's blocks of one epoch, each chained onto the one before."""

    def __init__(self) -> None:
        self.prev = GENESIS
        self.seq = 0

    def next(self, records: Sequence[Record] | None = None) -> bytes:
        self.seq += 1
        extra = () if records is None else tuple(records)
        payload = GW.block(self.seq, prev=self.prev, records=(GW.reading(self.seq), *extra))
        self.prev = block_hash(payload)
        return payload


async def _ingest(
    storage: Storage, payload: bytes, key: SigningKey, at: float, overlap: float = HOUR
) -> tuple[IngestBatch, BatchResult]:
    """Judge and store one block as the ingest would: the batch planned, what it stored."""
    message = Inbound(GW.topics.block, payload, tuple(GW.sign(payload, key)), at)
    grants = await storage.grants({key.kid})
    batch = dataclasses.replace(
        plan_batch([message], grants, default_catalogue()), key_overlap=overlap
    )
    return batch, await storage.ingest(batch)


async def deliver(
    storage: Storage, payload: bytes, key: SigningKey, at: float, overlap: float = HOUR
) -> Outcome | Reason:
    """Judge and store one block as the ingest would; its outcome, or the audit reason."""
    batch, result = await _ingest(storage, payload, key, at, overlap)
    return batch.audits[0].reason if batch.audits else result.outcomes[0]


async def acked_keys(
    storage: Storage, payload: bytes, key: SigningKey, at: float
) -> tuple[str, ...] | None:
    """Store one block as the ingest would; the `keys` of the ACK it gets."""
    batch, result = await _ingest(storage, payload, key, at)
    (sent,) = build_acks(batch.blocks, result, COLLECTOR, at)
    return decode_ack(sent.payload).keys


@pytest.fixture
async def storage(storage_url: str) -> AsyncIterator[Storage]:
    async with open_storage(storage_url) as opened:
        await register(opened, GW)
        await register(opened, OTHER)
        yield opened


async def _reasons(storage: Storage, reason: Reason) -> list[str]:
    return [row.detail for row in await storage.audit(gateway=GW.gateway, reason=reason)]


async def test_a_rotation_overlaps_then_retires_the_old_key(storage: Storage) -> None:
    chain, t = Chain(), BASE_TIME
    assert await deliver(storage, chain.next([announcement()]), OLD, t) is Outcome.STORED
    keys = {key.kid: key for key in await storage.keys(GW.gateway)}
    assert keys[NEW.kid].announced_by == OLD.kid
    assert (keys[NEW.kid].announced_epoch, keys[NEW.kid].announced_seq) == ("epoch-1", 1)
    assert keys[NEW.kid].added_at == t
    assert keys[OLD.kid].retired_at == t + HOUR
    # The overlap: both keys sign.
    assert await deliver(storage, chain.next(), NEW, t + 10) is Outcome.STORED
    assert await deliver(storage, chain.next(), OLD, t + HOUR - 1) is Outcome.STORED
    # Retired: the old key signs nothing new, audited with its reason.
    assert await deliver(storage, chain.next(), OLD, t + HOUR) is Reason.RETIRED_KEY
    [detail] = await _reasons(storage, Reason.RETIRED_KEY)
    assert OLD.kid in detail
    assert await deliver(storage, chain.next(), NEW, t + HOUR + 1) is Outcome.STORED
    # What the old key signed stays verifiable: its key is kept.
    assert {key.kid for key in await storage.keys(GW.gateway)} == {OLD.kid, NEW.kid}
    report = await verify_stored(storage, EVERYTHING, gateway=GW.gateway)  # type: ignore[arg-type]
    assert (report.blocks, report.verified, report.broken) == (4, 4, ())


async def test_the_same_announcement_twice_changes_nothing(storage: Storage) -> None:
    chain, t = Chain(), BASE_TIME
    assert await deliver(storage, chain.next([announcement()]), OLD, t) is Outcome.STORED
    # Sealed again (a new epoch re-seals undelivered records): stored, nothing moves.
    assert await deliver(storage, chain.next([announcement()]), OLD, t + 60) is Outcome.STORED
    keys = {key.kid: key for key in await storage.keys(GW.gateway)}
    assert keys[OLD.kid].retired_at == t + HOUR
    assert keys[NEW.kid].announced_seq == 1
    assert await _reasons(storage, Reason.BAD_KEY_ANNOUNCEMENT) == []


async def test_any_collector_on_the_database_acks_with_the_keys_it_holds(
    storage: Storage, storage_url: str
) -> None:
    chain, t = Chain(), BASE_TIME + 60
    # Taken: every ACK names it from the block that carried it on (OLD for the overlap).
    assert await acked_keys(storage, chain.next([announcement()]), OLD, t) == (NEW.kid, OLD.kid)
    refused = announcement(new=OTHER.key)  # another gateway's key: stored, not taken
    assert await acked_keys(storage, chain.next([refused]), OLD, t + 1) == (NEW.kid, OLD.kid)
    async with open_storage(storage_url) as second:  # another collector, the same database
        assert await acked_keys(second, chain.next(), OLD, t + 2) == (NEW.kid, OLD.kid)
        await second.revoke(GW.gateway, NEW.kid, t + 3)
        assert await acked_keys(storage, chain.next(), OLD, t + 4) == (OLD.kid,)


async def test_revocation_refuses_new_blocks_and_replays_but_keeps_stored_ones_verifiable(
    storage: Storage,
) -> None:
    chain, t = Chain(), BASE_TIME
    first, second = chain.next(), chain.next()
    assert await deliver(storage, first, OLD, t) is Outcome.STORED
    assert await deliver(storage, second, OLD, t + 1) is Outcome.STORED
    assert await storage.revoke(GW.gateway, OLD.kid, t + 2) == (OLD.kid,)

    assert await deliver(storage, chain.next(), OLD, t + 3) is Reason.REVOKED_KEY
    # A replay of a block the key signed (and the collector stored) before the revocation.
    assert await deliver(storage, second, OLD, t + 4) is Reason.REVOKED_KEY
    details = await _reasons(storage, Reason.REVOKED_KEY)
    assert details
    assert all(OLD.kid in detail for detail in details)
    # Announcing a successor under the revoked key does not work either.
    assert await deliver(storage, chain.next([announcement()]), OLD, t + 5) is Reason.REVOKED_KEY
    assert NEW.kid not in {key.kid for key in await storage.keys(GW.gateway)}

    report = await verify_stored(storage, EVERYTHING, gateway=GW.gateway)  # type: ignore[arg-type]
    assert (report.blocks, report.verified, report.broken) == (2, 2, ())


async def test_a_rotated_key_revoked_in_the_overlap_stops_at_once(storage: Storage) -> None:
    chain, t = Chain(), BASE_TIME
    assert await deliver(storage, chain.next([announcement()]), OLD, t) is Outcome.STORED
    await storage.revoke(GW.gateway, OLD.kid, t + 5)
    assert await deliver(storage, chain.next(), OLD, t + 6) is Reason.REVOKED_KEY
    assert await deliver(storage, chain.next(), NEW, t + 7) is Outcome.STORED


@pytest.mark.parametrize(
    ("record", "why"),
    [
        (announcement(replaces="0123456789abcdef"), "but the block is signed by"),
        (announcement(new=OLD), "announces itself"),
        (announcement(kid="0123456789abcdef"), "not ed25519 key 0123456789abcdef"),
        (announcement(public_key="-----BEGIN PUBLIC KEY-----\nnope\n"), "not taken"),
        (announcement(alg="rsa"), "not taken"),
        (announcement(new=OTHER.key), "registered to gateway"),
    ],
)
async def test_a_key_record_that_does_not_hold_up_is_audited_and_taken_by_nobody(
    storage: Storage, record: KeyRecord, why: str
) -> None:
    chain = Chain()
    # The block itself is sound: stored, readings and all.
    assert await deliver(storage, chain.next([record]), OLD, BASE_TIME) is Outcome.STORED
    [detail] = await _reasons(storage, Reason.BAD_KEY_ANNOUNCEMENT)
    assert why in detail
    keys = {key.kid: key for key in await storage.keys()}
    assert keys[OLD.kid].retired_at is None
    assert keys[OTHER.key.kid].gateway == OTHER.gateway
    assert set(keys) == {OLD.kid, OTHER.key.kid}


async def test_an_unregistered_key_cannot_sign_its_own_introduction(storage: Storage) -> None:
    stranger = generate_signing_key()
    record = announcement(new=stranger, replaces=stranger.kid)
    assert await deliver(storage, Chain().next([record]), stranger, BASE_TIME) is (
        Reason.UNKNOWN_KEY
    )
    assert stranger.kid not in {key.kid for key in await storage.keys()}


@pytest.mark.parametrize(
    ("back_at", "why"),
    [(2 * HOUR, "it was retired at"), (60.0, "it is being replaced: it retires at")],
    ids=["retired", "in-the-overlap"],
)
async def test_the_key_a_gateway_is_leaving_announced_again_is_refused_and_retires_nothing(
    storage: Storage, back_at: float, why: str
) -> None:
    chain, t = Chain(), BASE_TIME
    assert await deliver(storage, chain.next([announcement()]), OLD, t) is Outcome.STORED
    # NEW announces OLD back: taken, it would retire NEW while OLD is (or is being) retired.
    back = announcement(new=OLD, replaces=NEW.kid)
    keys = await acked_keys(storage, chain.next([back]), NEW, t + back_at)
    assert keys == ((NEW.kid,) if back_at > HOUR else (NEW.kid, OLD.kid))
    [detail] = await _reasons(storage, Reason.BAD_KEY_ANNOUNCEMENT)
    assert why in detail
    held = {key.kid: key for key in await storage.keys(GW.gateway)}
    assert (held[OLD.kid].retired_at, held[NEW.kid].retired_at) == (t + HOUR, None)
    # The gateway is not dark: NEW signs on after every overlap.
    later = t + back_at + 2 * HOUR
    assert await deliver(storage, chain.next(), NEW, later) is Outcome.STORED
    assert await deliver(storage, chain.next(), OLD, later + 1) is Reason.RETIRED_KEY
