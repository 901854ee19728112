"""Retention of the signed blocks, on SQLite and PostgreSQL, with the collector's clock injected.

Found in the closing note of a session: `storage.raw_days` did not bound the database, because
the `blocks` table (each block's signed bytes) was never pruned: 200 blocks kept 2.97 MB after
every reading they carried was gone. A block goes with its readings' month, except what the
collector still needs: the block at each epoch's acked_through (the hash every ACK names, the
`prev` the next block chains onto). A late resend of a pruned block is answered as the
duplicate it is, never stored again, and opens no hole, gap or chain break.
"""

from __future__ import annotations

import calendar
from collections.abc import AsyncIterator

import pytest

from collector.model import Reason
from collector.readmodel import EVERYTHING
from collector.storage import prune_storage, upgrade_storage
from collector.storage.capabilities import BlockArchive
from collector.storage.retention import DAY, RetentionPolicy
from collector.verify.core import Hole, VerifyReport
from collector.verify.service import verify_stored
from specs.block import block_hash
from specs.records import Reading
from tests.support.broker import Broker
from tests.support.clocks import ManualClock
from tests.support.collector_env import CollectorEnv, collector_env, heard_at
from tests.support.postgres import sql_execute, sql_rows
from tests.support.records import reading_at

MAY = float(calendar.timegm((2026, 5, 10, 8, 0, 0)))
JUNE = float(calendar.timegm((2026, 6, 1, 0, 0, 0)))
JULY = float(calendar.timegm((2026, 7, 17, 8, 0, 0)))
POLICY = RetentionPolicy(raw_days=45)
BLOCKS = 200
POINTS = 20


def _readings(seq: int, start: float = MAY) -> list[Reading]:
    return [
        reading_at(start + seq, seq + point / 100, point=f"T001-LT-{point:02d}")
        for point in range(1, POINTS + 1)
    ]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(MAY)


@pytest.fixture
async def env(broker: Broker, storage_url: str, clock: ManualClock) -> AsyncIterator[CollectorEnv]:
    async with collector_env(broker.port, storage_url, clock) as running:
        yield running


async def _held(env: CollectorEnv) -> tuple[int, int]:
    """How many blocks are stored, and the bytes of their signed payloads and signatures."""
    ((count, size),) = await env.rows(
        "SELECT count(*), coalesce(sum(length(payload) + length(sig)), 0) FROM blocks"
    )
    return int(count), int(size)


async def _store_may(env: CollectorEnv) -> list[bytes]:
    """Blocks 1..BLOCKS of readings in May, every one acknowledged."""
    sent = [await env.link.send(seq, records=_readings(seq)) for seq in range(1, BLOCKS + 1)]
    acks = [await env.link.next_ack() for _ in range(BLOCKS)]
    assert max(a.ack.acked_through for a in acks) == BLOCKS
    return sent


async def _verified(env: CollectorEnv) -> VerifyReport:
    """`collector verify` of the linked gateway's stored blocks."""
    assert isinstance(env.storage, BlockArchive)
    return await verify_stored(env.storage, EVERYTHING, gateway=env.gateway.gateway)


async def test_pruned_blocks_go_and_the_epoch_still_dedupes_chains_and_verifies(
    env: CollectorEnv, clock: ManualClock
) -> None:
    await heard_at(env.url, env.gateway.gateway, JUNE + 46 * DAY)
    sent = await _store_may(env)
    held = await _held(env)
    assert held[0] == BLOCKS
    # 45 days after May's end less a day, May is still kept: its readings and blocks stay.
    kept = await prune_storage(env.url, POLICY, JUNE + 44 * DAY)
    assert (kept.readings_dropped, await _held(env)) == (0, held)
    report = await prune_storage(env.url, POLICY, JUNE + 46 * DAY)
    assert report.readings_dropped == BLOCKS * POINTS
    # Only the block at acked_through stays: the hash ACKs name, the link the next block needs.
    newest = sent[-1]
    assert await _held(env) == (1, len(newest) + len(env.gateway.key.sign(newest).sig))
    assert await env.rows("SELECT seq FROM blocks") == [(BLOCKS,)]
    assert (kept.blocks_dropped, report.blocks_dropped) == (0, BLOCKS - 1)

    # An agent sends block 57 again (its outbox restored, a broker redelivering an old
    # session): answered as stored, never stored again, no hole, gap or chain break.
    clock.now = JULY
    await env.link.publish(sent[56])
    again = (await env.link.next_ack()).ack
    assert (again.seq, again.acked_through, again.missing, again.conflict) == (57, 200, (), False)
    assert again.acked_hash == block_hash(newest)
    (row,) = await env.audited(Reason.DUPLICATE)
    assert "epoch epoch-1 seq 57" in row.detail
    assert "retention" in row.detail
    assert await env.rows("SELECT seq FROM blocks") == [(BLOCKS,)]
    assert await env.rows("SELECT count(*) FROM readings") == [(0,)]
    assert await env.rows("SELECT count(*) FROM gaps") == [(0,)]
    assert await env.storage.audit(reason=Reason.CHAIN_BREAK) == ()

    # What is kept verifies, and the seqs retention pruned are no hole.
    checked = await _verified(env)
    assert (checked.blocks, checked.verified, checked.broken, checked.holes) == (1, 1, (), ())

    # The next live block chains onto the kept one.
    await env.link.send(BLOCKS + 1, records=_readings(BLOCKS + 1, start=JULY))
    live = (await env.link.next_ack()).ack
    assert (live.seq, live.acked_through, live.missing, live.conflict) == (201, 201, (), False)
    assert await env.storage.audit(reason=Reason.CHAIN_BREAK) == ()
    checked = await _verified(env)
    assert (checked.blocks, checked.verified, checked.broken, checked.holes) == (2, 2, (), ())
    # The next run keeps the new acked block (and its July readings); 200 goes now.
    later = await prune_storage(env.url, POLICY, JUNE + 46 * DAY)
    assert later.blocks_dropped == 1
    assert await env.rows("SELECT seq FROM blocks") == [(BLOCKS + 1,)]


async def test_an_open_hole_keeps_the_blocks_above_it(
    env: CollectorEnv, clock: ManualClock
) -> None:
    """Blocks from acked_through up stay while a hole is open: the hole's block, when it comes,
    chains onto both its neighbours, and every seq above it is still answered from the table."""
    await heard_at(env.url, env.gateway.gateway, JUNE + 46 * DAY)
    for seq in (1, 2, 3, 5, 6):  # one reading each, in May (block 5 chains onto the 4 sent below)
        await env.link.send(seq)
        await env.link.next_ack()
    report = await prune_storage(env.url, POLICY, JUNE + 46 * DAY)
    assert await env.rows("SELECT seq FROM blocks ORDER BY seq") == [(3,), (5,), (6,)]
    assert report.blocks_dropped == 2
    clock.now = JULY
    await env.link.send(4)
    filled = (await env.link.next_ack()).ack
    assert (filled.seq, filled.acked_through, filled.missing, filled.conflict) == (4, 6, (), False)
    checked = await _verified(env)
    assert (checked.blocks, checked.verified, checked.holes) == (4, 4, ())


async def test_a_hole_above_the_pruned_seqs_is_still_a_hole(env: CollectorEnv) -> None:
    await heard_at(env.url, env.gateway.gateway, JUNE + 46 * DAY)
    for seq in (1, 2, 3, 5):
        await env.link.send(seq)
        await env.link.next_ack()
    await prune_storage(env.url, POLICY, JUNE + 46 * DAY)
    checked = await _verified(env)
    assert checked.holes == (Hole(env.gateway.gateway, "epoch-1", 4, 4),)


_BEFORE_12 = (
    "DROP INDEX blocks_by_age",
    "ALTER TABLE blocks DROP COLUMN newest_t",
    "ALTER TABLE ingest_state DROP COLUMN pruned_through",
)
"""What SQLite's schema 12 and PostgreSQL's migration 7 add, undone."""


async def test_blocks_stored_before_the_upgrade_go_by_their_arrival(
    broker: Broker, storage_url: str
) -> None:
    async with collector_env(broker.port, storage_url, ManualClock(MAY)) as env:
        for seq in (1, 2, 3):
            await env.link.send(seq, records=_readings(seq))
            await env.link.next_ack()
    sqlite = storage_url.startswith("sqlite")
    older = "DELETE FROM schema_migrations WHERE version >= 7"
    for statement in (
        *_BEFORE_12,
        "DROP TABLE retention_state",  # schema 13, migration 8
        "DROP INDEX gaps_by_record_time",  # migration 11 (SQLite makes it again on open)
        # Migration 10 (SQLite's schema 15 adds its columns only where they are missing).
        *(
            ()
            if sqlite
            else (
                "ALTER TABLE alarms DROP COLUMN raise_ahead, DROP COLUMN clear_ahead",
                "ALTER TABLE feed DROP COLUMN active",  # migration 12
            )
        ),
        "PRAGMA user_version = 11" if sqlite else older,
    ):
        await sql_execute(storage_url, statement)
    before, _ = await upgrade_storage(storage_url)
    assert before == (11 if sqlite else 6)
    await heard_at(storage_url, env.gateway.gateway, JUNE + 46 * DAY)
    assert await sql_rows(
        storage_url,
        "SELECT DISTINCT newest_t, pruned_through FROM blocks"
        " JOIN ingest_state USING (gateway, epoch)",
    ) == [(MAY, 0)]
    report = await prune_storage(storage_url, POLICY, JUNE + 46 * DAY)
    assert report.blocks_dropped == 2
    assert await sql_rows(storage_url, "SELECT pruned_through FROM ingest_state") == [(2,)]
