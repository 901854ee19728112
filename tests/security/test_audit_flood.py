"""A flood of garbage cannot fill the collector's disk through the audit trail, nor its log.

Found by a hostile tester: 10,000 garbage messages wrote 10,000 audit rows in 6 s, with no
bound. Rejections are now aggregated per (source, reason, minute) with a count
(collector.audit.chain), so rows grow with minutes, reasons and (capped) sources, never with
the number of messages, and the real blocks arriving in the same batches are still stored.

The messages go through `Ingest.process`, the ingest loop's own step for one batch (verify,
store, ACK), on a real database of each backend; only MQTT is left out, so that every one of
the 10,000 arrives (the loop's bounded queue would drop some, and the count must be exact).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

from structlog.testing import capture_logs

from collector.audit.chain import MAX_SOURCES_PER_MINUTE
from collector.audit.verify import verify_chain
from collector.ingest.core import Inbound
from collector.ingest.service import Ingest, IngestSettings
from collector.storage import open_storage
from collector.storage.capabilities import AuditTrail
from hostkit.log_limit import LineLimit
from specs.block import GENESIS, block_hash
from tests.support.broker import Broker
from tests.support.collector_client import BASE_TIME, catalogue_with_coal, gateway_link, sim_gateway
from tests.support.collector_env import COLLECTOR_KEY, register, running_ingest, wait_until
from tests.support.postgres import sql_rows

FLOOD = 10_000
BATCH = 200  # the ingest's default batch_max: 199 garbage messages and one real block each
STEP = 5.0  # seconds of clock per batch: the flood spans about four minutes
ROW_BOUND = 600
"""At most this many rows: 5 minutes x 3 reasons x (32 sources + 1 overflow) is 495."""
MINUTES = math.ceil(FLOOD / (BATCH - 1) * STEP / 60) + 1  # the minutes the flood touches
LINE_BOUND = MINUTES * (64 + 1)
"""Log lines: at most 64 rejections a minute, and one count of those left unlogged."""

GATEWAY = sim_gateway(1)


def _garbage(index: int, at: float) -> Inbound:
    """Three kinds, in turn: unsigned junk on the real gateway's block topic, junk on the
    topic of a made-up gateway (a new source every time), and an unknown topic kind."""
    junk = f"garbage {index} ".encode() * 3
    match index % 3:
        case 0:
            return Inbound(GATEWAY.topics.block, junk, (), at)
        case 1:
            forged = sim_gateway(1000 + index)
            return Inbound(forged.topics.block, junk, (("alg", "ed25519"),), at)
        case _:
            return Inbound(f"{GATEWAY.topics.base}/up/junk", junk, (), at)


def _batches() -> Iterator[tuple[float, list[Inbound]]]:
    garbage = 0
    seq = 0
    while garbage < FLOOD:
        seq += 1
        at = BASE_TIME + seq * STEP
        payload = GATEWAY.block(seq, prev=_prev(seq))
        batch = [Inbound(GATEWAY.topics.block, payload, tuple(GATEWAY.sign(payload)), at)]
        take = min(BATCH - 1, FLOOD - garbage)
        batch.extend(_garbage(garbage + i, at) for i in range(take))
        garbage += take
        yield at, batch


_HASHES: dict[int, str] = {}


def _prev(seq: int) -> str:
    if seq == 1:
        return GENESIS
    if seq - 1 not in _HASHES:
        _HASHES[seq - 1] = block_hash(GATEWAY.block(seq - 1, prev=_prev(seq - 1)))
    return _HASHES[seq - 1]


async def _flood(storage_url: str) -> int:
    """Run the flood into `storage_url`; how many real blocks it carried."""
    now = BASE_TIME
    async with open_storage(storage_url) as storage:
        await register(storage, GATEWAY)
        ingest = Ingest(
            IngestSettings("127.0.0.1", 1),
            storage,
            COLLECTOR_KEY,
            clock=lambda: now,
            catalogue=catalogue_with_coal(),
            rejection_lines=LineLimit(clock=lambda: now),  # the flood's minutes, not the run's
        )
        blocks = 0
        for now, batch in _batches():  # noqa: B007 - the clock reads `now`
            acks = await ingest.process(batch)
            assert [ack.topic for ack in acks] == [GATEWAY.topics.ack]
            blocks += 1
    return blocks


async def test_ten_thousand_garbage_messages_make_a_bounded_number_of_audit_rows(
    storage_url: str,
) -> None:
    blocks = await _flood(storage_url)
    [(rows,)] = await sql_rows(storage_url, "SELECT count(*) FROM audit")
    assert rows <= ROW_BOUND, f"{rows} audit rows for {FLOOD} garbage messages"
    # The real data flowing at the same time is all stored.
    assert await sql_rows(storage_url, "SELECT count(*) FROM blocks") == [(blocks,)]
    assert await sql_rows(storage_url, "SELECT count(*) FROM readings") == [(blocks,)]


async def test_every_garbage_message_is_counted_and_the_chain_covers_the_rows(
    storage_url: str,
) -> None:
    await _flood(storage_url)
    async with open_storage(storage_url) as storage:
        assert isinstance(storage, AuditTrail)
        counted = sum(row.count for row in await storage.audit(limit=ROW_BOUND))
        assert counted == FLOOD
        sealed = await storage.seal_audit(BASE_TIME + 3600)  # every minute of the flood is over
        report = await verify_chain(storage)
    assert sealed > 0
    assert (report.intact, report.open, report.rows) == (True, 0, report.head_seq)
    assert report.rows <= ROW_BOUND


async def test_a_garbage_flood_through_the_broker_leaves_bounded_rows_and_real_blocks_acked(
    broker: Broker, storage_url: str
) -> None:
    """The same attack over MQTT, as a hostile client would send it, with a live gateway.

    2,000 junk messages on the gateway's block topic and on made-up gateways' topics, while
    the real gateway sends 20 blocks: every block is acknowledged and stored, and the junk
    leaves a handful of aggregated rows (one minute, two reasons, at most 33 sources each).
    """
    junk_count, blocks = 2_000, 20
    async with (
        running_ingest(broker.port, storage_url, COLLECTOR_KEY) as (_, storage),
        gateway_link(broker.port, GATEWAY) as link,
    ):
        await register(storage, GATEWAY)
        for n in range(junk_count):
            forged = GATEWAY if n % 2 else sim_gateway(3000 + n)
            await link.publish(b"junk %d" % n, [], topic=forged.topics.block)
            if n % (junk_count // blocks) == 0:
                await link.send(n // (junk_count // blocks) + 1)
        acked = [(await link.next_ack()).ack.acked_through for _ in range(blocks)]
        counted = await wait_until(
            lambda: storage.audit(limit=ROW_BOUND),
            lambda rows: sum(row.count for row in rows) >= junk_count,
        )
    assert max(acked) == blocks
    assert await sql_rows(storage_url, "SELECT count(*) FROM readings") == [(blocks,)]
    assert len(counted) <= 2 * 2 * (MAX_SOURCES_PER_MINUTE + 1)  # the flood may span 2 minutes


async def test_a_garbage_flood_writes_a_bounded_number_of_log_lines(tmp_path: Path) -> None:
    """Found by the long-run hostile test: each rejected message was one warning line (10,000
    here; 20,000 bogus messages to a real `collector serve` wrote 20,000), so a flood filled
    the log the audit kept small. A minute logs each source and reason once, 64 lines at most,
    and the next minute says how many it left out: together they still add up to the flood."""
    with capture_logs() as events:
        await _flood(f"sqlite:///{tmp_path / 'flood.db'}")
    rejected = [e for e in events if e["event"] == "message_rejected"]
    unlogged = [e for e in events if e["event"] == "message_rejections_unlogged"]
    lines = len(rejected) + len(unlogged)
    assert lines <= LINE_BOUND, f"{lines} log lines for {FLOOD} garbage messages"
    said_later = sum(e["count"] for e in unlogged)
    assert said_later > 0
    assert len(rejected) + said_later < FLOOD  # the last minute's count waits for the next
