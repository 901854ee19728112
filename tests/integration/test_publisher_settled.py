"""`Lanes.is_settled`, what a graceful stop waits on, counts every live block until it is sent.

The stop (edge_agent.shell.shutdown.await_last_acks) waits for the ACKs of the live blocks only
while the lanes say one is unanswered. A live block the send loop had taken but not yet sent
(its `still_held` read on the outbox's thread, longer under load), or one the backlog lane took
because its live notice came during the backlog's read, counted nowhere: the stop went on at
once, and the last block sealed before it was left unsent or unanswered until the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_delivery import Delivery
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.publisher_lanes import Lanes
from hostkit.backoff import ResendBackoff
from specs.ack import Ack
from specs.block import decode_block
from specs.records import Quality, Reading, iso_time
from tests.support.publisher_rig import GATEWAY_KEY, SITE

MIB = 1024 * 1024
T0 = 1_700_000_000.0


@contextlib.asynccontextmanager
async def _taking_live_block_1(tmp_path: Path, sealed: int) -> AsyncIterator[tuple[Lanes, Outbox]]:
    """An outbox of `sealed` blocks, block 1 said live and handed out by the live lane."""
    async with open_outbox(tmp_path / "outbox.db", SITE, GATEWAY_KEY) as outbox:
        for _ in range(sealed):
            reading = Reading("T001-LT-01", "WHP-LT", iso_time(time.time()), 1.0, "m", Quality.GOOD)
            await outbox.seal((reading,), now=time.time(), clock_synced=True)
        lanes = Lanes(4, ResendBackoff(30))
        lanes.add_live(1)
        assert await _next(lanes, outbox.delivery) == (1, True)
        yield lanes, outbox


async def _next(lanes: Lanes, delivery: Delivery) -> tuple[int, bool] | None:
    """The seq `next_block` hands out and whether it is live; None: nothing."""
    picked = await lanes.next_block(delivery)
    return None if picked is None else (picked[0].seq, picked[1])


async def _sealed_file(path: Path, blocks: int) -> Path:
    """An outbox file at `path` holding `blocks` blocks of one reading, closed: opened again,
    nothing is handed from memory (as a split's parts are not), each is read from the file."""
    async with open_outbox(path, SITE, GATEWAY_KEY) as outbox:
        for index in range(blocks):
            await outbox.seal(_readings(index, 1), now=T0 + index, clock_synced=True)
    return path


@contextlib.contextmanager
def _waited_for(lock: asyncio.Lock, monkeypatch: pytest.MonkeyPatch) -> Iterator[asyncio.Event]:
    """An event set as a task starts waiting for `lock` (held): its waiter is registered in the
    same step, before the task yields, so whoever the event wakes finds it waiting."""
    waiting = asyncio.Event()
    acquire = lock.acquire

    async def signalling() -> bool:
        if lock.locked():
            waiting.set()
        return await acquire()

    monkeypatch.setattr(lock, "acquire", signalling)
    yield waiting


async def _until_set(event: asyncio.Event, what: str) -> None:
    try:
        await asyncio.wait_for(event.wait(), 10)
    except TimeoutError:
        pytest.fail(f"{what}: not within 10 s")


async def _drained(lanes: Lanes, delivery: Delivery) -> list[tuple[int, bool]]:
    """What `next_block` hands out, each sent at once, until it hands nothing (see `_next`)."""
    handed: list[tuple[int, bool]] = []
    while (picked := await _next(lanes, delivery)) is not None:
        handed.append(picked)
        lanes.sending(picked[0], live=picked[1])
    return handed


async def test_a_live_block_taken_to_be_sent_is_not_settled(tmp_path: Path) -> None:
    async with _taking_live_block_1(tmp_path, 1) as (lanes, outbox):
        assert not lanes.is_settled, "taken, not sent yet"
        lanes.sending(1, live=True)
        assert not lanes.is_settled
        assert await _next(lanes, outbox.delivery) is None
        assert not lanes.is_settled, "sent, not answered"


async def test_a_live_notice_during_the_backlog_read_keeps_the_block_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _taking_live_block_1(tmp_path, 2) as (lanes, outbox):
        lanes.sending(1, live=True)
        # Block 2 is in the file; its notice comes while the backlog lane reads the file.
        lock = outbox.delivery._file.lock  # the backlog lane's read waits for it
        with _waited_for(lock, monkeypatch) as read_waits:
            async with lock:
                reading = asyncio.create_task(_next(lanes, outbox.delivery))
                await _until_set(read_waits, "the backlog read never waited for the lock")
                lanes.add_live(2)
        assert await reading is None, "the backlog lane leaves it to the live lane"
        assert not lanes.is_settled
        assert await _next(lanes, outbox.delivery) == (2, True)


async def test_a_live_block_being_read_to_be_sent_is_not_settled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A live block's parts (`resealed`) are read from the file, never handed from memory. The
    # live lane had let go of the last part and not yet said it taken while its read waited:
    # the ACK of the part before it landing then found the lanes settled, the stop went on.
    path = await _sealed_file(tmp_path / "outbox.db", 2)
    async with open_outbox(path, SITE, GATEWAY_KEY) as outbox:  # nothing handed from memory
        lanes = Lanes(4, ResendBackoff(30))
        lanes.resealed((1, 2))
        assert await _next(lanes, outbox.delivery) == (1, True)
        lanes.sending(1, live=True)
        lock = outbox.delivery._file.lock  # the read of block 2 waits for it
        with _waited_for(lock, monkeypatch) as read_waits:
            async with lock:
                taking = asyncio.create_task(_next(lanes, outbox.delivery))
                await _until_set(read_waits, "the read of block 2 never waited for the lock")
                lanes.acked(Ack(SITE.gateway, outbox.epoch, 1, (), 1, iso_time(time.time())))
                assert not lanes.is_settled, "block 2 is being read to be sent"
        assert await taking == (2, True)
        assert not lanes.is_settled, "taken, not sent yet"


async def test_a_live_block_thinned_before_it_is_sent_leaves_its_replacement_live(
    tmp_path: Path,
) -> None:
    # A 1 MiB budget: each seal past it makes room by thinning the oldest blocks, the live
    # ones not yet taken among them, into a replacement sealed at the head, with no live notice.
    lanes = Lanes(64, ResendBackoff(30))
    sealed: list[int] = []
    with capture_logs() as logs:
        async with open_outbox(tmp_path / "outbox.db", SITE, GATEWAY_KEY, max_bytes=MIB) as outbox:
            outbox.delivery.on_replaced(lanes.replaced)  # as the publisher does
            for index in range(12):
                block = await outbox.seal(_readings(index, 1500), now=T0 + index, clock_synced=True)
                lanes.add_live(block.seq)  # the sealer's notice, after the commit
                sealed.append(block.seq)
            handed = await _drained(lanes, outbox.delivery)
            undelivered = {b.seq for b in await outbox.delivery.undelivered(after=0, limit=99)}
    assert any(entry["event"] == "outbox_thinned" for entry in logs), "the budget was reached"
    replacements = undelivered - set(sealed)
    assert replacements, "no live block was thinned"
    assert [(seq, live) for seq, live in handed if seq in replacements] == [
        (seq, True) for seq in sorted(replacements)
    ], handed
    assert not lanes.is_settled, "the replacements are live, sent and not answered yet"


async def test_a_live_block_thinned_among_blocks_sealed_unsaid_puts_only_its_replacement_live(
    tmp_path: Path,
) -> None:
    # Blocks sealed with no live notice (an import's, say) after the live block, each past the
    # 1 MiB budget: room made thins the oldest, the live block first, into a replacement
    # sealed between them. That, and only that, goes live: the newest blocks said live
    # instead (by position) sent the replacement as backlog and left the stop waiting for
    # unrelated ones.
    lanes = Lanes(64, ResendBackoff(30))
    with capture_logs() as logs:
        async with open_outbox(tmp_path / "outbox.db", SITE, GATEWAY_KEY, max_bytes=MIB) as outbox:
            outbox.delivery.on_replaced(lanes.replaced)  # as the publisher does
            live = await outbox.seal(_readings(0, 1500), now=T0, clock_synced=True)
            lanes.add_live(live.seq)
            unsaid = [
                (await outbox.seal(_readings(index, 1500), now=T0 + index, clock_synced=True)).seq
                for index in range(1, 5)
            ]
            its_readings = set(_readings(0, 1500))
            holding = {
                block.seq
                for block in await outbox.delivery.undelivered(after=0, limit=999)
                if its_readings.intersection(decode_block(block.payload).records)
            }
            handed = await _drained(lanes, outbox.delivery)
    thinned = [entry for entry in logs if entry["event"] == "outbox_thinned"]
    assert thinned[0]["from_seq"] == live.seq, thinned
    assert holding, "its readings were all dropped"
    said_live = {seq for seq, live in handed if live}
    assert said_live.isdisjoint(unsaid), handed
    assert said_live == holding, (sorted(holding), handed)


async def test_a_live_block_delivered_before_the_live_lane_takes_it_puts_nothing_live(
    tmp_path: Path,
) -> None:
    # Released by an ACK of the backlog lane's send, say: nothing was sealed in its place.
    async with open_outbox(tmp_path / "outbox.db", SITE, GATEWAY_KEY) as outbox:
        lanes = Lanes(4, ResendBackoff(30))
        outbox.delivery.on_replaced(lanes.replaced)  # as the publisher does
        for index in range(6):
            await outbox.seal(_readings(index, 1), now=T0 + index, clock_synced=True)
        lanes.add_live(1)
        await outbox.delivery.mark_delivered(epoch=outbox.epoch, through=1, also=None, now=T0)
        handed = await _drained(lanes, outbox.delivery)
        assert not [seq for seq, live in handed if live], "blocks 2-6 were never said live"
        assert lanes.is_settled


async def test_a_live_block_found_damaged_puts_nothing_live(tmp_path: Path) -> None:
    # Declared lost on the live lane's read (a gap record, no replacement of its readings).
    path = await _sealed_file(tmp_path / "outbox.db", 4)
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE blocks SET payload = CAST(? AS BLOB) WHERE seq = 1", (b"bad",))
    with capture_logs() as logs:
        async with open_outbox(path, SITE, GATEWAY_KEY) as outbox:
            lanes = Lanes(4, ResendBackoff(30))
            outbox.delivery.on_replaced(lanes.replaced)  # as the publisher does
            lanes.add_live(1)
            handed = await _drained(lanes, outbox.delivery)
    assert [e for e in logs if e["event"] == "outbox_block_damaged"], logs
    assert not [seq for seq, live in handed if live], handed
    assert lanes.is_settled


async def test_parts_past_the_live_lane_are_left_to_the_backlog_and_said(tmp_path: Path) -> None:
    # A window of 1: the lane holds 4 seqs, and hands 1 out until its ACK.
    path = await _sealed_file(tmp_path / "outbox.db", 6)
    with capture_logs() as logs:
        async with open_outbox(path, SITE, GATEWAY_KEY) as outbox:  # nothing handed from memory
            lanes = Lanes(1, ResendBackoff(30))
            lanes.resealed((1, 2, 3, 4, 5, 6))  # a split's gap record and its parts
            handed = await _drained(lanes, outbox.delivery)
    (full,) = [e for e in logs if e["event"] == "live_lane_full"]
    assert full["left_to_backlog"] == [1, 2], full
    assert handed == [(3, True), (1, False)], "one live, one backlog: each lane's window"
    assert not lanes.is_settled


def _readings(index: int, count: int) -> tuple[Reading, ...]:
    base = T0 + index * count
    return tuple(
        Reading(f"T{i % 5:03d}-LT-01", "WHP-LT", iso_time(base + i), i / 7, "m", Quality.GOOD)
        for i in range(count)
    )
