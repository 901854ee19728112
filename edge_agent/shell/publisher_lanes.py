"""What the publisher sends next, what waits for an ACK, and what is owed again.

Two lanes, each with its own window of `max_inflight` blocks waiting for an ACK: live blocks
(sealed while the publisher runs, oldest first) and the backlog lane (blocks owed again -
sent but listed missing, or unacked past their time - then the backlog oldest first). A live
block waits only for the live lane, so a draining backlog and its resends cannot delay it:
after an outage live latency stays what it was while the backlog drains beside it.

The sealer says a block is live once its transaction has committed; the backlog lane reads the
outbox and may find it in between. So a block newer than every live one waits a moment
(`_LIVE_NOTICE_GRACE`) for that notice before the backlog lane takes it: sent as backlog, it
queued at the collector behind the whole backlog (bench/replay.py: a live block at the end of a
drain answered after 256 ms, the run's p99). One sealed by another process (backfill, `outbox
resend`) goes out as backlog after that moment, or once a newer block is said live. One said
live while the backlog lane read it is left to the live lane: sent as backlog, a stop did not
wait for its ACK (`is_settled` counts the live lane only, and the block it has taken to send).
So do the blocks a live block's readings were sealed again in, at the head with no live notice
(`resealed`): split as too large to send (`outbox_oversize`), or thinned to make room before it
was sent (`replaced`: the room made in this process says which blocks; room made by another
process, `edge-agent backfill`, is read from the file once the live block is found gone,
`Delivery.replacement_of`); a stop right after went on at once and left them for the next
start, and another process's replacement went as backlog, behind the whole backlog.

A block unanswered is owed again after `uplink.ack_timeout`, and each time it goes again
unanswered it waits longer (hostkit.backoff.ResendBackoff: doubling up to 8x, jittered): a
collector that lags behind the timeout got every block it had not answered yet once per
timeout for as long as it lagged, which slowed it further (the hostile tester's loaded
collector got each block 20-25 times at a 2 s timeout). An ACK that answers a backlog-lane
block sent once, in time, proves the collector keeps up (it takes the backlog after live
blocks) and puts every block back to the first step; an answer in the live lane proves only
that live blocks get through. Resends are paced, never dropped.

The publisher (edge_agent.shell.publisher) owns the session and calls these on its one event
loop; nothing here touches MQTT.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import structlog

from edge_agent.shell.outbox_delivery import Delivery
from edge_agent.shell.outbox_reads import StoredBlock
from hostkit.backoff import ResendBackoff
from specs.ack import Ack

log = structlog.get_logger("edge_agent.publisher")

_BACKLOG_CHUNK: Final = 32
# How long a block newer than every live one waits for the sealer's notice: the notice comes
# right after the commit, so this only needs to outlast a busy event loop.
_LIVE_NOTICE_GRACE: Final = 1.0


@dataclass(frozen=True, slots=True)
class _Flight:
    """A block sent and waiting for an ACK."""

    sent_at: float  # monotonic
    order: int  # send order
    due: float  # when it is owed again unanswered (monotonic)


class Lanes:
    """The live and backlog lanes: blocks to send, blocks in flight, blocks owed again."""

    def __init__(
        self, window: int, pace: ResendBackoff, spread: Callable[[], float] = random.random
    ) -> None:
        self._window = window
        self._pace = pace
        self._spread = spread  # draws the jitter of each resend's wait, in [0, 1)
        self._live: deque[int] = deque(maxlen=window * 4)
        self._owed: deque[int] = deque()
        self._sent: dict[int, _Flight] = {}  # by seq
        self._sent_live: set[int] = set()  # those of them sent in the live lane
        # Sends of each block in flight or owed again since the collector last proved it keeps
        # up: its step in the resend pace. Bounded as they are.
        self._unanswered: dict[int, int] = {}
        self._sends = 0
        self._backlog_acked_at = 0.0  # when an ACK last answered a backlog-lane block
        self._cursor = 0
        self._newest_live = 0  # the newest seq said live this session
        # The live block `next_block` took, from before its read until `sending` (or until
        # found gone, or the next call: it gave way, or went to be split): unsettled
        # meanwhile, or a stop went on without it.
        self._taken_live: int | None = None
        # A block newer than every live one that the backlog lane leaves for its live notice,
        # and since when (monotonic).
        self._held: tuple[int, float] | None = None
        self.live_moved = asyncio.Event()  # set when a live block is answered or given up

    def add_live(self, seq: int) -> None:
        """A new block is in the outbox: it goes before the backlog."""
        self._live.append(seq)
        self._newest_live = max(self._newest_live, seq)

    def resealed(self, seqs: Sequence[int]) -> None:
        """The readings of a live block went into the blocks `seqs`: they are live too.

        The lane holds 4 * `max_inflight` seqs, and the oldest give way to new ones: parts past
        that (a split's first, its gap record's) are left to the backlog lane, which sends
        them after the live ones; a stop does not wait for them (`live_lane_full`).
        """
        new = [seq for seq in seqs if seq not in self._live and seq not in self._sent]
        lane = self._live.maxlen or 0
        if (over := len(self._live) + len(new) - lane) > 0:
            log.info("live_lane_full", left_to_backlog=sorted([*self._live, *new])[:over])
        for seq in new:
            self.add_live(seq)

    def replaced(self, gone: Collection[int], sealed: Sequence[int]) -> None:
        """Room made let the blocks `gone` give way to the replacement `sealed` (`on_replaced`).

        When one of them was a live block not yet sent (in the lane, taken, or being read),
        its readings are in `sealed` (thinned; or a gap record, dropped): live too. Those the
        live lane found gone otherwise (delivered meanwhile, declared damaged) left nothing.
        """
        waiting = {*self._live, self._taken_live}
        if not waiting.isdisjoint(gone):
            self.resealed(sealed)

    async def _follow(self, delivery: Delivery, seq: int) -> None:
        """The live block `seq` went unsent: the blocks room made sealed in its place go live.

        As the file tells (`Delivery.replacement_of`): room made by another process
        (`edge-agent backfill` importing into the full outbox) is told by nobody, and its
        replacement went as backlog, queued at the collector behind the whole backlog. Room
        made here was told (`replaced`): what is live or in flight already is left as it is.
        """
        self.resealed(await delivery.replacement_of(seq))

    @property
    def is_settled(self) -> bool:
        """Whether no live block waits to be sent or for its ACK."""
        return not self._live and not self._sent_live and self._taken_live is None

    @property
    def is_idle(self) -> bool:
        """Whether nothing waits to be sent, to be sent again, or for its ACK."""
        return not (self._sent or self._live or self._owed or self._held)

    async def next_block(self, delivery: Delivery) -> tuple[StoredBlock, bool] | None:
        """The next block to send and whether it goes in the live lane; None: both are full."""
        if self._taken_live is not None:  # not sent: it gave way, or went to be split
            await self._follow(delivery, self._taken_live)  # taken meanwhile: not settled
            self._taken_live = None
            self.live_moved.set()
        while self._live and len(self._sent_live) < self._window:
            # Taken before it is read: while the read waits (a part of a split is read from the
            # file) the lane may be empty, and an ACK landing then found the lanes settled
            # (the stop went on, leaving it unsent).
            self._taken_live = seq = self._live.popleft()
            block = await delivery.get(seq)
            if block is None:  # delivered, declared, or given way: its replacement goes live
                await self._follow(delivery, seq)
            elif block.seq not in self._sent:
                return block, True
            self._taken_live = None  # gone, or in flight already
            self.live_moved.set()
        if len(self._sent) - len(self._sent_live) >= self._window:
            return None
        block = await self._next_backlog_block(delivery)
        return None if block is None else (block, False)

    async def _next_backlog_block(self, delivery: Delivery) -> StoredBlock | None:
        while self._owed:
            seq = self._owed.popleft()
            block = await delivery.get(seq)
            if seq in self._sent:
                continue  # in flight already
            if block is None:  # delivered (or given way to a gap record) meanwhile
                self._unanswered.pop(seq, None)
            else:
                return block
        while True:
            chunk = await delivery.undelivered(after=self._cursor, limit=_BACKLOG_CHUNK)
            if not chunk:
                self._held = None
                return None
            for block in chunk:
                if block.seq in self._sent:
                    self._cursor = block.seq
                    continue
                if block.seq in self._live:
                    return None  # said live during the read: the live lane's, the cursor stays
                if self._awaits_live_notice(block.seq):
                    return None  # the cursor stays before it
                self._cursor = block.seq
                return block

    def _awaits_live_notice(self, seq: int) -> bool:
        """Whether the backlog lane should leave `seq` for the live notice on its way."""
        if not self._newest_live or seq <= self._newest_live:
            self._held = None
            return False
        now = time.monotonic()
        if self._held is None or self._held[0] != seq:
            self._held = (seq, now)
        if now - self._held[1] < _LIVE_NOTICE_GRACE:
            return True
        # Not this process's block, or its notice was lost: backlog it is, and so is what
        # follows it now (a backfill goes at once after this one moment), until a live notice.
        self._held = None
        self._newest_live = 0
        return False

    def sending(self, seq: int, *, live: bool) -> None:
        """`seq` is about to be published: in flight from now on.

        Before the publish: its ACK can come back before the PUBACK does, and must find it
        (else it waits for the ACK timeout and is sent again).
        """
        if seq == self._taken_live:
            self._taken_live = None
        self._sends += 1
        sends = self._unanswered.get(seq, 0) + 1
        self._unanswered[seq] = sends
        now = time.monotonic()
        due = now + self._pace.wait(sends, self._spread())
        self._sent[seq] = _Flight(now, self._sends, due)
        if live:
            self._sent_live.add(seq)

    def time_out(self) -> None:
        """Owe again every block whose wait for its ACK is over (`ResendBackoff`)."""
        now = time.monotonic()
        for seq, flight in list(self._sent.items()):
            if now >= flight.due:
                self._landed(seq)
                self._owed.append(seq)
                log.info("block_ack_timed_out", seq=seq, sends=self._unanswered.get(seq, 0))

    def wait_for(self, longest: float) -> float:
        """How long the send loop may sleep: `longest`, or less when an ACK times out first."""
        if self._held is not None:
            longest = min(longest, max(0.05, self._held[1] + _LIVE_NOTICE_GRACE - time.monotonic()))
        if not self._sent:
            return longest
        soonest = min(flight.due for flight in self._sent.values())
        return min(longest, max(0.05, soonest - time.monotonic()))

    def acked(self, ack: Ack) -> None:
        """`ack` released blocks: they land, and those it shows lost are owed again."""
        # Send order of the block this ACK answers; unknown (already released): assume
        # everything in flight may still arrive and let the ACK timeout catch real losses.
        trigger = self._sent[ack.seq].order if ack.seq in self._sent else 0
        now = time.monotonic()
        answered_backlog = ack.seq in self._sent and ack.seq not in self._sent_live
        if answered_backlog:
            self._backlog_acked_at = now
        answered_live = ack.seq in self._sent_live
        keeping_up = answered_backlog and ack.seq is not None and self._unanswered.get(ack.seq) == 1
        for seq in [s for s in self._sent if s <= ack.acked_through or s == ack.seq]:
            self._landed(seq)
        for seq in [s for s in self._unanswered if s <= ack.acked_through or s == ack.seq]:
            del self._unanswered[seq]
        if keeping_up:
            # Sent once and answered before its time was up, behind the live lane: the next
            # send of every block waits `uplink.ack_timeout` again.
            self._unanswered = dict.fromkeys(self._unanswered, 0)
        self._owe_missing(ack, trigger, answered_live=answered_live)

    def _owe_missing(self, ack: Ack, trigger: int, *, answered_live: bool) -> None:
        """Owe again the blocks in flight that `ack` shows lost.

        Those sent before the one this ACK answers (send order `trigger`) and still missing -
        lost on the way, say published while the collector had not subscribed again after a
        broker restart. A block sent after it may simply still be on its way; a missing block
        never sent (the rest of a backlog below a live block) is not lost, the backlog lane
        gets to it in order, behind live blocks.
        """
        for seq, flight in list(self._sent.items()):
            if flight.order >= trigger or not any(low <= seq <= high for low, high in ack.missing):
                continue
            if (
                answered_live
                and seq not in self._sent_live
                and flight.sent_at <= self._backlog_acked_at
            ):
                # The collector takes live blocks before queued backlog ones
                # (collector.ingest.lanes): a backlog block sent before this live one may
                # still wait there. Lost only if the backlog lane has heard no ACK since it
                # was sent (its whole window lost, as after a broker restart).
                continue
            self._landed(seq)
            if seq not in self._owed:
                self._owed.append(seq)

    def owe(self, seqs: Iterable[int]) -> None:
        """Owe `seqs` again at once: blocks the collector misses that read as delivered.

        `Delivery.answer_missing` made them undelivered again; nothing else would send them.
        """
        for seq in seqs:
            if seq not in self._sent and seq not in self._owed:
                self._owed.append(seq)

    def _landed(self, seq: int) -> None:
        """`seq` no longer waits for an ACK (answered, or owed again)."""
        del self._sent[seq]
        if seq in self._sent_live:
            self._sent_live.discard(seq)
            self.live_moved.set()

    def forget(self) -> None:
        """Start sending from scratch (a new session, or a new epoch)."""
        self._sent.clear()
        self._sent_live.clear()
        self._owed.clear()
        self._unanswered.clear()
        self._live.clear()
        self.live_moved.set()  # what was live is backlog now
        self._cursor = 0
        self._newest_live = 0
        self._held = None
        self._taken_live = None

    def rescan(self) -> None:
        """Read the backlog again from its start (another process wrote to the outbox)."""
        self._cursor = 0
