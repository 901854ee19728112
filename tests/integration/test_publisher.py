"""The publisher against a real Mosquitto, with the test playing the collector's part.

The test subscribes to the gateway's block topic and answers with ACKs it signs itself, so it
can send exactly the ACKs a scenario needs: none, forged, with holes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from structlog.testing import capture_logs

from edge_agent.core.missing_blocks import CLOCK_ALLOWANCE
from edge_agent.shell.host import clock_synchronized
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.publisher import Publisher
from edge_agent.shell.shutdown import await_last_acks
from hostkit.mqtt import CancelSafeClient
from specs.block import block_hash, decode_block
from specs.lanes import Lane
from specs.records import GapReason, GapRecord, Quality, Reading, iso_time
from specs.signing import signing_key_from_seed
from tests.support.broker import Broker, free_port
from tests.support.collector_link import FakeCollectorLink, InOrderCollector, collector_link
from tests.support.publisher_rig import GATEWAY_KEY, SITE, TOPICS, gateway_publisher

pytestmark = pytest.mark.timeout(60)

FORGER_KEY = signing_key_from_seed(b"f" * 32)


@dataclass
class Rig:
    outbox: Outbox
    publisher: Publisher
    link: FakeCollectorLink

    async def seal(self, count: int) -> None:
        for _ in range(count):
            reading = Reading("T001-LT-01", "WHP-LT", iso_time(time.time()), 1.0, "m", Quality.GOOD)
            block = await self.outbox.seal((reading,), now=time.time(), clock_synced=True)
            self.publisher.notify_sealed(block.seq)

    async def undelivered(self) -> list[int]:
        return [b.seq for b in await self.outbox.delivery.undelivered(after=0, limit=1000)]

    async def until_undelivered(self, seqs: list[int], within: float = 10) -> None:
        """Wait until `seqs` are the undelivered blocks; fails with those left after `within` s."""
        deadline = time.monotonic() + within
        while (left := await self.undelivered()) != seqs:
            assert time.monotonic() < deadline, left
            await asyncio.sleep(0.02)

    async def live_past_a_full_window(self, backlog: int, window: int) -> int:
        """Seal a live block once the backlog fills the window, unanswered; its seq, once sent."""
        await self.link.wait_for(window)
        await self.seal(1)
        await self.link.wait_for(window + 1)
        return backlog + 1


@contextlib.asynccontextmanager
async def rig(
    tmp_path: Path,
    broker: Broker,
    *,
    backlog: int,
    max_inflight: int,
    ack_timeout: float = 30,
    clock_synced: Callable[[], bool] = clock_synchronized,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Rig]:
    async with open_outbox(tmp_path / "outbox.db", SITE, GATEWAY_KEY) as outbox:
        publisher = gateway_publisher(
            outbox,
            broker.port,
            ack_timeout=ack_timeout,
            max_inflight=max_inflight,
            clock_synced=clock_synced,
            clock=clock,
        )
        # CancelSafeClient: a task cancelled while its `link.ack` awaits the PUBACK ends
        # (test_a_stop_awaits_the_live_blocks_acks_not_the_backlogs cancels one).
        async with CancelSafeClient(
            "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as client:
            await client.subscribe(TOPICS.block, qos=1)
            link = FakeCollectorLink(client, outbox.epoch)
            test_rig = Rig(outbox, publisher, link)
            for _ in range(backlog):
                # Sealed before the publisher runs: backlog, not live.
                reading = Reading("T001-LT-01", "WHP-LT", iso_time(0), 0.0, "m", Quality.GOOD)
                await outbox.seal((reading,), now=time.time(), clock_synced=True)
            tasks = [asyncio.create_task(link.listen()), asyncio.create_task(publisher.run())]
            try:
                await asyncio.wait_for(publisher.connected.wait(), 10)
                yield test_rig
            finally:
                publisher.stop()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)


async def test_live_blocks_go_before_the_backlog(tmp_path: Path, broker: Broker) -> None:
    async with rig(tmp_path, broker, backlog=20, max_inflight=4) as r:
        await r.link.wait_for(4)
        assert r.link.received == [1, 2, 3, 4], "the window is full with the oldest backlog"
        await r.seal(1)  # seq 21, live
        await r.link.ack(4)
        await r.link.wait_for(8)
        assert r.link.received[4] == 21, f"live block must go first, got {r.link.received}"
        assert r.link.received[5:8] == [5, 6, 7]


async def test_only_a_valid_collector_ack_releases_blocks(tmp_path: Path, broker: Broker) -> None:
    async with rig(tmp_path, broker, backlog=5, max_inflight=10) as r:
        await r.link.wait_for(5)
        await r.link.ack(5, key=FORGER_KEY)
        await asyncio.sleep(0.5)  # give a forged ACK every chance to (wrongly) take effect
        assert await r.undelivered() == [1, 2, 3, 4, 5]
        await r.link.ack(3)
        await r.until_undelivered([4, 5], within=5)


async def test_missing_ranges_are_resent_at_once(tmp_path: Path, broker: Broker) -> None:
    async with rig(tmp_path, broker, backlog=5, max_inflight=10) as r:
        await r.link.wait_for(5)
        # The collector holds 1 and 4..5 (this ACK is for 5): 2..3 got lost on the way.
        await r.link.ack(1, missing=((2, 3),), seq=5)
        await r.link.wait_for(7, timeout=5)  # well before the 30 s ACK timeout
        assert sorted(r.link.received[5:]) == [2, 3]
        assert await r.undelivered() == [2, 3, 4], "the ACK released 1 and 5"


async def test_a_hole_an_ack_leaves_unlisted_is_kept_and_resent_after_the_timeout(
    tmp_path: Path, broker: Broker
) -> None:
    """The collector lists only its lowest holes (collector.ingest.core.MAX_ACK_RANGES): a
    seq above acked_through that an ACK leaves out is neither released nor taken for stored,
    and the ACK timeout sends it again, so capping the list loses nothing."""
    async with rig(tmp_path, broker, backlog=6, max_inflight=10, ack_timeout=3) as r:
        await r.link.wait_for(6)
        # The collector holds 1, 3 and 5; this ACK (for 5) lists only the lowest hole, 2.
        await r.link.ack(1, missing=((2, 2),), seq=5)
        await r.link.wait_for(7, timeout=2)  # before the ACK timeout
        assert r.link.received[6] == 2
        assert await r.undelivered() == [2, 3, 4, 6], "the ACK released 1 and 5 only"
        await r.link.wait_for(10, timeout=8)
        assert {3, 4, 6} <= set(r.link.received[7:]), "unlisted, then resent at the timeout"


async def test_unacked_blocks_are_resent_after_the_timeout(tmp_path: Path, broker: Broker) -> None:
    async with rig(tmp_path, broker, backlog=2, max_inflight=10, ack_timeout=0.5) as r:
        await r.link.wait_for(2)
        await r.link.wait_for(4, timeout=5)
        assert r.link.received[:4] == [1, 2, 1, 2], "resends send the same blocks"
        await r.link.ack(2)
        count = len(r.link.received)
        await asyncio.sleep(1.2)
        assert len(r.link.received) == count, "acked blocks are never resent"


async def test_resent_blocks_carry_the_sealed_bytes(tmp_path: Path, broker: Broker) -> None:
    async with rig(tmp_path, broker, backlog=1, max_inflight=1, ack_timeout=0.3) as r:
        await r.link.wait_for(3, timeout=5)
        stored = await r.outbox.delivery.get(1)
        assert stored is not None
        assert r.link.received[:3] == [1, 1, 1]
        assert r.link.payloads[:3] == [stored.payload] * 3


async def test_a_block_left_unacked_is_resent_ever_more_slowly(
    tmp_path: Path, broker: Broker
) -> None:
    # A collector that never answers (overloaded, stopped): every unacked block went again
    # every ack_timeout for as long as it lasted - 20 sends of a block in 10 s at 0.5 s, and
    # the hostile tester's loaded collector got each block 20-25 times at 2 s. Each resend now
    # waits twice as long as the one before, up to 8x ack_timeout: at the earliest the block
    # goes at 0, 0.5, 1.5, 3.5 and 7.5 s, so 5 times in 10 s. It still goes: nothing is dropped.
    async with rig(tmp_path, broker, backlog=1, max_inflight=4, ack_timeout=0.5) as r:
        await r.link.wait_for(1)
        first = r.link.when(1, 1)
        await asyncio.sleep(first + 10.5 - time.monotonic())
        sends = r.link.sends_of(1, within=(first, first + 10))
        assert 3 <= sends <= 5, f"block 1 went {sends} times in 10 s"
        assert await r.undelivered() == [1]


@pytest.mark.parametrize("lane", [Lane.BACKLOG, Lane.LIVE])
async def test_an_answer_in_time_in_the_backlog_lane_resets_the_resend_pace(
    tmp_path: Path, broker: Broker, lane: Lane
) -> None:
    # Block 1 goes unanswered 4 times: the ACKs of live blocks 2, 3 and 4, each sent after it,
    # list it missing, and it goes again at once each time; its next wait is 8-10 ack_timeouts.
    # Then block 5 goes in `lane`, and an ACK answers it in time and lists block 1 missing once
    # more. In the backlog lane that proves the collector keeps up (it takes the backlog after
    # live blocks, collector.ingest.lanes): block 1 goes at once as if sent the first time,
    # then again one ack_timeout later. A live block answered in time proves only that live
    # blocks get through: block 1 goes at once, then not for 8-10 ack_timeouts.
    # The steps are ACKs, not timeouts, so no step waits for one: the ack_timeout can be far
    # longer than an answer takes on a loaded machine, and the test still takes seconds.
    ack_timeout = 4.0
    async with rig(tmp_path, broker, backlog=0, max_inflight=4, ack_timeout=ack_timeout) as r:
        await r.seal(1)
        await r.link.wait_for_send(1, 1)
        for live in (2, 3, 4):
            await r.seal(1)
            await r.link.wait_for_send(live, 1)
            await r.link.ack(0, missing=((1, 1),), seq=live)
            await r.link.wait_for_send(1, live)
        if lane is Lane.LIVE:
            await r.seal(1)
        else:  # sealed without the sealer's notice: the backlog lane takes it after a moment
            reading = Reading("T001-LT-01", "WHP-LT", iso_time(0), 0.0, "m", Quality.GOOD)
            await r.outbox.seal((reading,), now=time.time(), clock_synced=True)
        await r.link.wait_for_send(5, 1)
        assert r.link.lanes[r.link.received.index(5)] is lane
        await r.link.ack(0, missing=((1, 1),), seq=5)
        fifth = await r.link.wait_for_send(1, 5)  # at once, not at its due time
        if lane is Lane.LIVE:
            await asyncio.sleep(fifth + 3 * ack_timeout - time.monotonic())
            assert r.link.received.count(1) == 5, (
                f"the next is 8-10 timeouts away: {r.link.received}"
            )
        else:  # one timeout away, where without the reset it is 8-10
            await r.link.wait_for_send(1, 6, timeout=6 * ack_timeout)
        assert await r.undelivered() == [1]


async def _new_epoch(r: Rig, old: str) -> str:
    deadline = time.monotonic() + 10
    while r.outbox.epoch == old:
        assert time.monotonic() < deadline, "no new epoch started"
        await asyncio.sleep(0.05)
    return r.outbox.epoch


async def _assert_rolled_over(r: Rig, old: str, readings: int) -> None:
    """A new epoch started; its blocks carry every reading again and name the old epoch."""
    new = await _new_epoch(r, old)
    # The epoch is switched first and the old blocks are sealed again after it, a chunk a
    # transaction (Outbox.start_new_epoch): wait for the reseal, then look at what it made.
    deadline = time.monotonic() + 10
    while True:
        blocks = await r.outbox.delivery.undelivered(after=0, limit=1000)
        records = [rec for b in blocks for rec in decode_block(b.payload).records]
        if len([rec for rec in records if isinstance(rec, Reading)]) >= readings:
            break
        assert time.monotonic() < deadline, f"{len(blocks)} blocks resealed so far"
        await asyncio.sleep(0.05)
    assert {b.epoch for b in blocks} == {new}
    [gap] = [rec for rec in records if isinstance(rec, GapRecord)]
    assert (gap.reason, gap.epoch, gap.from_seq, gap.to_seq) == (
        GapReason.OUTBOX_RESTORED,
        old,
        1,
        None,
    )
    assert len([rec for rec in records if isinstance(rec, Reading)]) == readings
    # ... and they go out under the new epoch at once.
    deadline = time.monotonic() + 10
    while not any(decode_block(p).header.epoch == new for p in r.link.payloads):
        assert time.monotonic() < deadline, "the new epoch was never sent"
        await asyncio.sleep(0.05)


async def _ack_beyond_the_local_chain(r: Rig) -> None:
    # The outbox was restored from a snapshot: the collector holds seqs this file never had.
    await r.link.ack(8, seq=5)


async def _ack_a_conflict(r: Rig) -> None:
    stored = await r.outbox.delivery.get(3)
    assert stored is not None
    await r.link.ack(3, seq=3, acked_hash=block_hash(stored.payload), conflict=True)


async def _ack_another_hash_at_the_acked_seq(r: Rig) -> None:
    # The collector's block 3 is another lineage's: releasing 1..3 would lose this one's.
    await r.link.ack(3, seq=4, acked_hash="0" * 64)


@pytest.mark.parametrize(
    "disagreeing_ack",
    [_ack_beyond_the_local_chain, _ack_a_conflict, _ack_another_hash_at_the_acked_seq],
    ids=[
        "an_ack_beyond_the_local_chain",
        "a_conflict",
        "another_hash_at_the_acked_seq",
    ],
)
async def test_an_ack_that_disagrees_releases_nothing_and_starts_a_new_epoch(
    tmp_path: Path, broker: Broker, disagreeing_ack: Callable[[Rig], Awaitable[None]]
) -> None:
    async with rig(tmp_path, broker, backlog=5, max_inflight=10) as r:
        await r.link.wait_for(5)
        old = r.outbox.epoch
        await disagreeing_ack(r)
        await _assert_rolled_over(r, old, readings=5)


async def test_an_ack_with_the_same_hash_releases_as_before(tmp_path: Path, broker: Broker) -> None:
    async with rig(tmp_path, broker, backlog=5, max_inflight=10) as r:
        await r.link.wait_for(5)
        stored = await r.outbox.delivery.get(3)
        assert stored is not None
        await r.link.ack(3, seq=3, acked_hash=block_hash(stored.payload))
        await r.until_undelivered([4, 5], within=5)
        assert r.outbox.epoch == r.link.epoch


# --- Replay beside live polling (G5): live blocks have a lane of their own ---------------------


async def test_live_blocks_overtake_a_draining_backlog(tmp_path: Path, broker: Broker) -> None:
    # A collector answering at once drains a backlog; a live block sealed mid-drain may wait
    # only behind what was already in flight when it was sealed (the backlog's window), not
    # behind resends of the `missing` holes its own ACK reports below it.
    window, backlog, lives = 8, 300, 8
    async with rig(tmp_path, broker, backlog=backlog, max_inflight=window) as r:
        sealed: dict[int, int] = {}  # live seq -> blocks arrived when it was sealed

        async def seal_now_and_then(arrived: int) -> None:
            if arrived % 25 == 0 and len(sealed) < lives:
                await r.seal(1)
                sealed[(await r.outbox.stats()).last_seq] = len(r.link.received)

        async with InOrderCollector(r.link, after_answer=seal_now_and_then).answering():
            await r.link.wait_for(backlog + lives, timeout=20)
            await asyncio.wait_for(r.publisher.drained(), 10)  # every one answered
        waits = [r.link.received.index(seq) - at for seq, at in sorted(sealed.items())]
        # In flight when sealed, plus the one block being published at that moment.
        assert max(waits) <= window + 1, f"backlog blocks ahead of each live block: {waits}"
        assert sorted(r.link.received) == list(range(1, backlog + lives + 1)), "no resends"


async def test_each_block_says_its_lane_so_the_collector_can_put_live_first(
    tmp_path: Path, broker: Broker
) -> None:
    # The collector ingests `lane: backlog` blocks only when nothing else waits
    # (tests/integration/test_collector_lanes.py): the backlog and every resend say backlog,
    # blocks of the live lane say live.
    async with rig(tmp_path, broker, backlog=3, max_inflight=4) as r:
        await r.link.wait_for(3)
        await r.seal(1)  # 4, live
        await r.link.wait_for(4)
        await r.link.ack(0, missing=((1, 3),), seq=4)  # 1..3 were sent before 4: owed again
        await r.link.wait_for(7)
    lanes = dict(zip(r.link.received[:4], r.link.lanes[:4], strict=True))
    assert lanes == {1: Lane.BACKLOG, 2: Lane.BACKLOG, 3: Lane.BACKLOG, 4: Lane.LIVE}
    assert sorted(r.link.received[4:7]) == [1, 2, 3]
    assert r.link.lanes[4:7] == [Lane.BACKLOG] * 3, "a resend is backlog"


async def test_settled_waits_for_the_live_lane_not_for_the_backlog(
    tmp_path: Path, broker: Broker
) -> None:
    # What a stop waits for (edge_agent.shell.shutdown): the live blocks sealed before it
    # answered, not a backlog that takes minutes to drain (the stop has 5 s in all).
    async with rig(tmp_path, broker, backlog=200, max_inflight=4) as r:
        live = await r.live_past_a_full_window(200, 4)  # the backlog's is never answered here
        settling = asyncio.create_task(r.publisher.settled())
        await asyncio.sleep(0.3)
        assert not settling.done(), f"{live} is not answered yet"
        await r.link.ack(0, missing=((1, 200),), seq=live)
        await asyncio.wait_for(settling, 5)
        assert (await r.outbox.stats()).undelivered == 200
        await r.seal(1)  # 202: unsettled again until answered
        assert not r.publisher.is_settled


async def test_a_stop_awaits_the_live_blocks_acks_not_the_backlogs(
    tmp_path: Path, broker: Broker
) -> None:
    # The stop's wait for the last ACKs (edge_agent.shell.shutdown, 2 s of its 5): while the
    # collector drains a backlog its ACKs keep coming, and waiting for the whole outbox spent
    # all 2 s on blocks that take minutes (bench/replay.py: SIGTERM to exit 3.8-3.9 s).
    async with rig(tmp_path, broker, backlog=200, max_inflight=4) as r:
        live = await r.live_past_a_full_window(200, 4)
        await r.link.ack(0, missing=((1, 200),), seq=live)

        async def answer_the_backlog() -> None:
            for through in itertools.count(1):
                await asyncio.sleep(0.2)
                await r.link.ack(through, missing=((through + 1, 200),), seq=live)

        answering = asyncio.create_task(answer_the_backlog())
        loop = asyncio.get_running_loop()
        began = loop.time()
        live_acked = await await_last_acks(r.publisher, began + 2.0)
        took = loop.time() - began
        answering.cancel()
        backlog_left = (await r.outbox.stats()).undelivered
    assert live_acked, "the live block was answered"
    assert took < 1.0, f"the stop waited {took:.2f} s for the backlog's ACKs"
    assert backlog_left > 190, "the backlog stays for the next start"


async def test_backlog_queued_behind_a_live_block_at_the_collector_is_not_resent(
    tmp_path: Path, broker: Broker
) -> None:
    # The collector stores a live block before the backlog blocks queued ahead of it
    # (collector.ingest.lanes), so the live block's ACK lists them missing though they are
    # only waiting. Owing them again on that ACK resent the whole backlog window on every
    # live ACK: bench/replay.py drained at 600 readings/s instead of 25,000, the collector
    # logging 24,000 duplicates. While the backlog lane is being answered, they are not lost.
    async with rig(tmp_path, broker, backlog=20, max_inflight=4) as r:
        await r.link.wait_for(4)  # 1..4 in the backlog lane
        await r.link.ack(1, seq=1)  # the backlog lane is answered: 2..4 wait at the collector
        await r.link.wait_for(5)  # 5 fills the window
        await r.seal(1)  # 21, live
        await r.link.wait_for(6)
        assert r.link.received[5] == 21
        await r.link.ack(1, missing=((2, 20),), seq=21)
        await asyncio.sleep(0.5)
        resent = r.link.received[6:]
        assert not {2, 3, 4} & set(resent), f"queued backlog blocks were resent: {resent}"


async def test_missing_holes_never_sent_are_not_pulled_ahead_of_live(
    tmp_path: Path, broker: Broker
) -> None:
    # The collector holds the live block 201 only: 1..200 are 'missing', but only 1..4 were
    # ever sent. Those four are owed again; the other 196 stay backlog, behind the next live.
    async with rig(tmp_path, broker, backlog=200, max_inflight=4) as r:
        await r.link.wait_for(4)
        await r.seal(1)  # 201: its own lane, sent while the backlog's window is full
        await r.link.wait_for(5)
        assert r.link.received[4] == 201
        await r.link.ack(0, missing=((1, 200),), seq=201)
        await r.link.wait_for(9, timeout=5)
        assert sorted(r.link.received[5:9]) == [1, 2, 3, 4], "sent before 201: owed at once"
        await r.seal(1)  # 202
        await r.link.wait_for(10, timeout=5)
        assert r.link.received[9] == 202, f"live goes first: {r.link.received}"


async def test_blocks_lost_across_a_broker_restart_are_resent_before_the_ack_timeout(
    tmp_path: Path, broker: Broker
) -> None:
    # A broker without persistence restarts; the agent reconnects before the collector has
    # subscribed again, so what it sends at once is lost. The first live block the collector
    # gets back is answered with those lost blocks as missing: owed at once, not after 30 s.
    async with rig(tmp_path, broker, backlog=50, max_inflight=4, ack_timeout=30) as r:
        await r.link.wait_for(4)
        broker.stop()
        broker.start()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_disconnected(r.publisher), 10)
        await asyncio.wait_for(r.publisher.connected.wait(), 10)
        published = r.publisher.published
        await _wait_until(lambda: r.publisher.published >= published + 4)  # into the void
        async with collector_link(broker, r.outbox.epoch) as link:
            await r.seal(1)  # 51
            await link.wait_for(1, timeout=5)
            assert link.received[0] == 51, "a live block is never stuck behind lost ones"
            async with InOrderCollector(link).answering():
                await link.wait_for(5, timeout=5)  # well before the 30 s ACK timeout
                await _wait_until(lambda: r.publisher.last_ack is not None)
            assert sorted(link.received[1:5]) == [1, 2, 3, 4], link.received


async def test_blocks_sealed_during_an_outage_do_not_delay_live_ones_after_it(
    tmp_path: Path, broker: Broker
) -> None:
    # Sealed while the uplink was down, 1..10 are backlog when it returns: the live block
    # sealed after the reconnect does not queue behind them in the live lane.
    window = 2
    async with rig(tmp_path, broker, backlog=0, max_inflight=window, ack_timeout=30) as r:
        broker.stop()
        await asyncio.wait_for(_disconnected(r.publisher), 10)
        await r.seal(10)
        broker.start()
        async with collector_link(broker, r.outbox.epoch) as link:
            async with InOrderCollector(link).answering():
                await asyncio.wait_for(r.publisher.connected.wait(), 10)
                await r.seal(1)  # 11
                await _wait_until(lambda: 11 in link.received)
                await asyncio.wait_for(r.publisher.drained(), 10)
            ahead = link.received.index(11)
            assert ahead <= 2 * window, f"live 11 went after {ahead} blocks: {link.received}"


async def _disconnected(publisher: Publisher) -> None:
    while publisher.connected.is_set():
        await asyncio.sleep(0.02)


async def _wait_until(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.02)


async def test_a_cancelled_publisher_stops_even_as_pubacks_arrive(tmp_path: Path) -> None:
    # aiomqtt's publish waits for the PUBACK with asyncio.wait_for, which on 3.11 drops a
    # cancellation that lands in the loop iteration the PUBACK does: the send loop then went on
    # publishing (and resending, its ACKs unheard) while its stop waited for it for good - the
    # replay bench's stall, and an agent's stop that ran out its budget. Cancelled many times
    # at arbitrary moments of a busy stream, the publisher must end every time.
    broker = Broker(port=free_port(), workdir=tmp_path)
    broker.start()
    try:
        async with open_outbox(tmp_path / "outbox.db", SITE, GATEWAY_KEY) as outbox:
            for _ in range(3000):
                reading = Reading("T001-LT-01", "WHP-LT", iso_time(0), 0.0, "m", Quality.GOOD)
                await outbox.seal((reading,), now=time.time(), clock_synced=True)
            publisher = gateway_publisher(
                outbox, broker.port, ack_timeout=0.2, max_inflight=50, reconnect_after=0.05
            )
            for attempt in range(40):
                running = asyncio.create_task(publisher.run())
                await asyncio.wait_for(publisher.connected.wait(), 10)
                await asyncio.sleep(0.005 * (attempt % 7))
                publisher.stop()
                running.cancel()
                done, _ = await asyncio.wait([running], timeout=5)
                assert done, f"attempt {attempt}: the publisher went on after its cancellation"
    finally:
        broker.stop()


async def test_a_task_left_cancelling_by_a_taskgroup_keeps_its_publisher(
    tmp_path: Path, broker: Broker
) -> None:
    # On Python 3.11 a TaskGroup whose child fails after the group's body has ended cancels the
    # waiting task and never uncancels it: the task's cancelling() stays 1, no stop meant. The
    # collector's ingest loop took that count for its stop after a failed ACK publish and
    # exited (c58099c); the publisher took it for its stop right after sending its meta on
    # connect. A stop is said (Publisher.stop), not inferred.
    async with open_outbox(tmp_path / "outbox.db", SITE, GATEWAY_KEY) as outbox:
        publisher = gateway_publisher(
            outbox, broker.port, ack_timeout=30, max_inflight=4, meta=b'{"kind":"meta"}'
        )

        async def fails() -> None:
            await asyncio.sleep(0)
            raise RuntimeError("a child of a TaskGroup fails")

        async def supervised() -> None:
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(fails())
            except* RuntimeError:
                pass  # handled; on 3.11 this task's cancelling() is 1 from here on
            await publisher.run()

        # CancelSafeClient: a task cancelled while its `link.ack` awaits the PUBACK ends
        # (test_a_stop_awaits_the_live_blocks_acks_not_the_backlogs cancels one).
        async with CancelSafeClient(
            "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as client:
            await client.subscribe(TOPICS.block, qos=1)
            link = FakeCollectorLink(client, outbox.epoch)
            listening = asyncio.create_task(link.listen())
            running = asyncio.create_task(supervised())
            connected = asyncio.create_task(publisher.connected.wait())
            try:
                await asyncio.wait(
                    [connected, running], timeout=10, return_when=asyncio.FIRST_COMPLETED
                )
                assert not running.done(), "the publisher ended without being stopped"
                await Rig(outbox, publisher, link).seal(1)
                await link.wait_for(1)
                assert not running.done(), "the publisher ended without being stopped"
            finally:
                publisher.stop()
                for task in (listening, running, connected):
                    task.cancel()
                await asyncio.gather(listening, running, connected, return_exceptions=True)


async def test_a_block_sealed_while_live_blocks_flow_is_not_taken_for_backlog(
    tmp_path: Path, broker: Broker
) -> None:
    # The sealer tells the publisher about a block once its transaction has committed. In
    # between, the backlog lane reading the outbox found it and sent it as backlog: behind the
    # whole backlog queued at the collector (bench/replay.py: a live block at the end of a
    # drain answered after 256 ms, the run's p99). A block newer than every live one waits a
    # moment for its own notice instead.
    async with rig(tmp_path, broker, backlog=20, max_inflight=2) as r:
        async with InOrderCollector(r.link).answering():
            await r.seal(1)  # 21: live blocks flow
            reading = Reading("T001-LT-01", "WHP-LT", iso_time(time.time()), 1.0, "m", Quality.GOOD)
            block = await r.outbox.seal((reading,), now=time.time(), clock_synced=True)  # 22
            # The backlog's ACKs come back, each waking the send loop to read the outbox on.
            await _wait_until(lambda: r.publisher.published >= 21)
            async with asyncio.timeout(5):  # all but 22 ACKed
                while set(await r.undelivered()) - {block.seq}:
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.2)
            r.publisher.notify_sealed(block.seq)  # the sealer's notice, late
            await r.link.wait_for(22)
        assert r.link.lanes[r.link.received.index(22)] is Lane.LIVE, list(
            zip(r.link.received, r.link.lanes, strict=True)
        )


async def test_a_signed_ack_whose_issued_at_is_no_time_is_rejected_and_changes_nothing(
    tmp_path: Path, broker: Broker
) -> None:
    # The agent took such an ACK with issued_at -inf: it released blocks 1-5, and the mark it
    # set (acked_through 5 at -inf) was earlier than any time, so the next ACK below it, a stale
    # one another collector issued before it, counted as issued more than CLOCK_ALLOWANCE after
    # it: a collector gone back. Blocks 3-5, deleted by retention meanwhile, were declared lost
    # ('released') though the collector holds them. The collector's signature does not make a
    # field that is no time one: the ACK is refused with its reason and nothing moves.
    with capture_logs() as logs:
        async with rig(tmp_path, broker, backlog=5, max_inflight=10) as r:
            await r.link.wait_for(5)
            await r.link.ack(5, seq=5, issued_at="yesterday")

            def events(name: str) -> list[MutableMapping[str, Any]]:
                return [entry for entry in logs if entry["event"] == name]

            async def undelivered_is(seqs: list[int]) -> bool:
                return await r.undelivered() == seqs

            deadline = time.monotonic() + 10
            while not events("ack_rejected") and not await undelivered_is([]):
                assert time.monotonic() < deadline, "the ACK was never handled"
                await asyncio.sleep(0.02)
            await r.outbox.prune(delivered_before=time.time() + 1)
            stale = iso_time(time.time() - 5)
            await r.link.ack(2, seq=2, missing=((3, 5),), issued_at=stale)
            deadline = time.monotonic() + 10
            while not await undelivered_is([3, 4, 5]) and (await r.outbox.stats()).last_seq == 5:
                assert time.monotonic() < deadline, await r.undelivered()
                await asyncio.sleep(0.02)
            stats = await r.outbox.stats()
            sealed = [
                record
                for block in await r.outbox.delivery.undelivered(after=5, limit=100)
                for record in decode_block(block.payload).records
            ]
            assert stats.last_seq == 5, f"sealed after the ACKs: {sealed}"
            assert await r.undelivered() == [3, 4, 5]
    rejected = events("ack_rejected")
    assert len(rejected) == 1, rejected
    assert "issued_at" in rejected[0]["reason"], rejected[0]
    assert not events("collector_acked_through_went_back")


async def _sealed_gaps(r: Rig, seq: int) -> list[tuple[str, int | None, int | None]]:
    """The gap records of block `seq` (undelivered): (reason, from_seq, to_seq) each."""
    async with asyncio.timeout(10):
        while (await r.outbox.stats()).last_seq < seq:
            await asyncio.sleep(0.02)
    block = await r.outbox.delivery.get(seq)
    assert block is not None, f"block {seq} is not waiting to be sent"
    return [
        (record.reason.value, record.from_seq, record.to_seq)
        for record in decode_block(block.payload).records
        if isinstance(record, GapRecord)
    ]


async def test_a_seq_whose_declaration_was_pruned_is_declared_again_for_a_restored_collector(
    tmp_path: Path, broker: Broker
) -> None:
    # Block 2 is lost on disk; the collector lists it, and block 4 declares it (outbox_corrupt);
    # the collector lists 2 once more before 4 reaches it, so the agent reads that declaration.
    # The collector stores 4 and ACKs through it, retention prunes 1-4, then the collector's
    # database is put back to a backup that held block 1 only: it lists 2-4 missing again.
    # The running agent still counted 2 as declared by block 4, which it no longer holds, and
    # declared only 3-4 ('released'): the collector kept 2 an open hole until the agent
    # restarted, when 2-4 were declared. A declaration goes with its block.
    async with rig(tmp_path, broker, backlog=3, max_inflight=10) as r:
        await r.link.wait_for(3)
        await r.outbox._file.db.execute("DELETE FROM blocks WHERE seq = 2")  # damage: the row gone
        await r.link.ack(1, seq=3, missing=((2, 2),))
        assert await _sealed_gaps(r, 4) == [("outbox_corrupt", 2, 2)]
        await r.link.wait_for(4)
        # A second answer of the collector before it got 4 (to 3 sent again, say) lists 2
        # again: the agent reads block 4's declaration, and seals nothing more.
        await r.link.ack(1, seq=3, missing=((2, 2),))
        await r.link.ack(4, seq=4)
        await r.until_undelivered([])
        assert await r.outbox.prune(delivered_before=time.time() + 1) == 3
        # The restored collector, well after the ACK through 4 (CLOCK_ALLOWANCE).
        await r.link.ack(1, seq=1, missing=((2, 4),), issued_at=iso_time(time.time() + 60))
        assert await _sealed_gaps(r, 5) == [("released", 2, 4)]


async def test_a_stale_ack_after_a_restart_declares_nothing_the_collector_holds(
    tmp_path: Path, broker: Broker
) -> None:
    # The mark that keeps a stale ACK (another collector's, issued before the collector stored
    # what it lists missing) from being answered lived in memory only: after a restart the
    # first ACK was answered whatever its age. One the persistent session kept for the agent
    # while it was down lists 3-5 missing, which an ACK through 5 released and retention
    # deleted before the restart: a 'released' gap record declared them lost, though the
    # collector holds them.
    async with rig(tmp_path, broker, backlog=5, max_inflight=10) as r:
        await r.link.wait_for(5)
        await r.link.ack(5, seq=5)
        await r.until_undelivered([])
        assert await r.outbox.prune(delivered_before=time.time() + 1) == 5
    async with rig(tmp_path, broker, backlog=0, max_inflight=10) as r:
        await r.seal(1)  # seq 6
        await r.link.wait_for(1)
        await r.link.ack(2, seq=2, missing=((3, 5),), issued_at=iso_time(time.time() - 5))
        await r.link.ack(6, seq=6)  # taken after the stale one: the session keeps their order
        deadline = time.monotonic() + 10
        while 6 in await r.undelivered():
            assert time.monotonic() < deadline, await r.undelivered()
            await asyncio.sleep(0.02)
        sealed = [
            record
            for block in await r.outbox.delivery.undelivered(after=6, limit=100)
            for record in decode_block(block.payload).records
        ]
        assert (await r.outbox.stats()).last_seq == 6, f"sealed after the ACKs: {sealed}"
    # A collector gone back (its ACK issued well after the mark's) is still answered after one.
    async with rig(tmp_path, broker, backlog=0, max_inflight=10) as r:
        await r.link.ack(2, seq=2, missing=((3, 5),), issued_at=iso_time(time.time() + 60))
        deadline = time.monotonic() + 10
        while (await r.outbox.stats()).last_seq == 6:
            assert time.monotonic() < deadline, "the restored collector was not answered"
            await asyncio.sleep(0.02)
        (block,) = await r.outbox.delivery.undelivered(after=6, limit=100)
        (gap,) = decode_block(block.payload).records
        assert isinstance(gap, GapRecord), gap
        assert (gap.reason, gap.from_seq, gap.to_seq) == (GapReason.RELEASED, 3, 5)


async def test_an_ack_issued_in_the_agents_future_does_not_hide_a_restored_collector(
    tmp_path: Path, broker: Broker
) -> None:
    # A collector whose clock ran a month ahead ACKed through 5; the mark kept that time (and
    # the outbox with it, across restarts), so every later ACK below the mark from a collector
    # whose clock is right looked issued before it, stale: a restored collector's holes were
    # never answered (3-5 neither sent again nor declared). The mark now keeps that time
    # bounded by the agent's synchronized clock too, and a restore is an ACK later by either.
    # But the far-ahead collector's own stale ACK is not later by its clock, and ahead of the
    # agent's: not answered (with the bounded time alone it was, 3-4 declared `released`).
    heard_at = time.time()
    month_ahead = heard_at + 30 * 86_400
    async with rig(tmp_path, broker, backlog=5, max_inflight=10, clock_synced=lambda: True) as r:
        await r.link.wait_for(5)
        await r.link.ack(5, seq=5, issued_at=iso_time(month_ahead))
        await r.until_undelivered([])
        assert await r.outbox.prune(delivered_before=time.time() + 1) == 5
        sql = "SELECT through, issued_at, bound FROM acked"
        async with r.outbox._file.db.execute(sql) as cursor:
            (through, at, bound), *more = await cursor.fetchall()
        assert (through, abs(at - month_ahead) < 0.01, more) == (5, True, []), (at, more)
        assert heard_at <= bound <= time.time() + CLOCK_ALLOWANCE, (heard_at, bound)
    # Restarted; the agent's clock a minute on (moved, not waited for).
    async with rig(
        tmp_path,
        broker,
        backlog=0,
        max_inflight=10,
        clock_synced=lambda: True,
        clock=lambda: time.time() + 60,
    ) as r:
        # The far-ahead collector's own stale ACK, 5 s before its ACK through 5: not answered.
        await r.link.ack(2, seq=2, missing=((3, 4),), issued_at=iso_time(month_ahead - 5))
        # Another collector's, issued before the ACK through 5 reached the agent: not answered.
        await r.link.ack(2, seq=2, missing=((3, 4),), issued_at=iso_time(heard_at - 5))
        # The collector put back to a backup, its clock right, a minute later.
        await r.link.ack(2, seq=2, missing=((3, 5),), issued_at=iso_time(time.time() + 60))
        assert await _sealed_gaps(r, 6) == [("released", 3, 5)]
        assert (await r.outbox.stats()).last_seq == 6
