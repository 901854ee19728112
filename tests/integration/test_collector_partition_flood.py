"""PostgreSQL: one block naming many past months makes their partitions a bounded few at a time.

A gateway whose clock was reset (or a hostile one) may seal one block holding a reading of every
month since 1970. Each month needs two partitions, each made under an ACCESS EXCLUSIVE lock on
its parent: made all in one transaction, 683 months held `readings` for ~70 s (every other
collector's ingest and open waited, or failed on their lock timeout), all for one batch. Now an
ingest makes at most MONTHS_PER_INGEST of them, each month in a transaction of its own, and
fails (not acknowledged) while more are missing: the resend makes the next ones, and the block
is stored whole in the end, nothing lost; another gateway's ingest goes on meanwhile.
"""

from __future__ import annotations

import calendar
from typing import Final

import asyncpg
import pytest
from structlog.testing import capture_logs

from collector.ingest.core import Inbound
from collector.ingest.service import Ingest, IngestSettings
from collector.storage import open_storage
from collector.storage.base import StorageError
from collector.storage.postgres import PostgresStorage
from collector.storage.postgres.partitions import MONTHS_PER_INGEST, existing_months
from specs.records import Reading
from tests.support.collector_api import BEIJING, NANCHANG, NOW, level, store_blocks
from tests.support.collector_client import SimGateway
from tests.support.collector_env import COLLECTOR_KEY, register
from tests.support.postgres import sql_rows

MONTHS: Final = 60  # 2020-01 to 2024-12: more than two ingests' worth, under three
FLOOD: Final[list[Reading]] = [
    level(float(calendar.timegm((2020 + n // 12, n % 12 + 1, 15, 0, 0, 0))), 1.0)
    for n in range(MONTHS)
]


async def test_a_block_naming_many_past_months_is_stored_after_bounded_resends(
    postgres_url: str,
) -> None:
    flooding = await PostgresStorage.open(postgres_url, now=NOW)
    other = await PostgresStorage.open(postgres_url, now=NOW)
    db = await asyncpg.connect(postgres_url)
    try:
        await register(flooding, NANCHANG, BEIJING)
        await store_blocks(other, BEIJING, {1: [level(NOW - 5, 1.0)]})  # the current months
        before = await existing_months(db)
        made: list[int] = []
        refusals: list[str] = []
        with capture_logs() as logs:
            for seq in range(2, 2 + MONTHS):  # far more tries than needed: it must end
                try:
                    await store_blocks(flooding, NANCHANG, [FLOOD])
                except StorageError as exc:
                    refusals.append(str(exc))
                    # Meanwhile another gateway's live block is stored, by another collector.
                    await store_blocks(other, BEIJING, {seq: [level(NOW - 5 + seq, 1.0)]})
                    continue
                finally:
                    made.append(len(await existing_months(db) - before) - sum(made))
                break
        stored = await db.fetchval(
            "SELECT count(*) FROM readings WHERE gateway = $1", NANCHANG.gateway
        )
        beijing = await db.fetchval(
            "SELECT count(*) FROM readings WHERE gateway = $1", BEIJING.gateway
        )
    finally:
        await db.close()
        await flooding.close()
        await other.close()
    assert made == [MONTHS_PER_INGEST, MONTHS_PER_INGEST, MONTHS - 2 * MONTHS_PER_INGEST]
    assert len(refusals) == 2
    assert "left to their resend" in refusals[0]
    deferred = [e for e in logs if e["event"] == "partition_months_deferred"]
    assert [e["left"] for e in deferred] == [MONTHS - MONTHS_PER_INGEST, MONTHS - 48]
    assert (stored, beijing) == (MONTHS, 1 + len(refusals))


@pytest.mark.parametrize("months", [MONTHS_PER_INGEST])
async def test_a_block_within_the_bound_is_stored_at_once(postgres_url: str, months: int) -> None:
    storage = await PostgresStorage.open(postgres_url, now=NOW)
    try:
        await register(storage, NANCHANG)
        await store_blocks(storage, NANCHANG, [FLOOD[:months]])
    finally:
        await storage.close()
    db = await asyncpg.connect(postgres_url)
    try:
        stored = await db.fetchval("SELECT count(*) FROM readings")
    finally:
        await db.close()
    assert stored == months


def _signed(gateway: SimGateway, seq: int, records: list[Reading]) -> Inbound:
    payload = gateway.block(seq, records=records)
    return Inbound(gateway.topics.block, payload, tuple(gateway.sign(payload)), NOW)


async def test_the_other_blocks_of_the_flooding_blocks_batch_are_stored_in_its_ingest(
    storage_url: str,
) -> None:
    """One batch: the flooding block of Nanchang and three live blocks of Beijing. On PostgreSQL
    the flood waits for its resends (24 months an ingest), but Beijing's blocks are stored and
    ACKed by this very ingest, not left to their own resend with it. SQLite has no partitions:
    everything is stored at once. Before: the ingest failed whole (StorageError), Beijing's
    blocks with it (0 of 3 stored)."""
    async with open_storage(storage_url) as storage:
        await register(storage, NANCHANG, BEIJING)
        ingest = Ingest(IngestSettings("127.0.0.1", 1), storage, COLLECTOR_KEY, clock=lambda: NOW)
        live = [_signed(BEIJING, seq, [level(NOW - 5 + seq, 1.0)]) for seq in (1, 2, 3)]
        flood = _signed(NANCHANG, 1, FLOOD)
        acks = await ingest.process([flood, *live])
        beijing = await storage.stream(BEIJING.gateway, "epoch-1")
        nanchang = await storage.stream(NANCHANG.gateway, "epoch-1")
        tries = 1
        while nanchang is None:  # the agent's resends, until the block is stored whole
            assert tries <= 3, "the flood must be stored after its bounded resends"
            await ingest.process([flood])
            tries += 1
            nanchang = await storage.stream(NANCHANG.gateway, "epoch-1")
        stored = await sql_rows(storage_url, "SELECT gateway, count(*) FROM readings GROUP BY 1")
    assert beijing is not None
    assert beijing.acked_through == 3
    answered = sorted(ack.topic for ack in acks)
    postgres = storage_url.startswith("postgresql")
    if postgres:
        assert answered == [BEIJING.topics.ack] * 3  # none for the flood: it waits
    else:
        assert answered == sorted([BEIJING.topics.ack] * 3 + [NANCHANG.topics.ack])
    assert tries == (3 if postgres else 1)
    assert dict(stored) == {BEIJING.gateway: 3, NANCHANG.gateway: MONTHS}
