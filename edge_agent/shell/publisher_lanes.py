"""What the publisher sends next, what waits for an ACK, and what is owed again.

Two lanes, each with its own window of `max_inflight` blocks waiting for an ACK: live blocks
(sealed while the publisher runs, oldest first) and the backlog lane (blocks owed again -
sent but listed missing, or unacked past the timeout - then the backlog oldest first). A live
block waits only for the live lane, so a draining backlog and its resends cannot delay it:
after an outage live latency stays what it was while the backlog drains beside it.

The sealer says a block is live once its transaction has committed; the backlog lane reads the
outbox and may find it in between. So a block newer than every live one waits a moment
(`_LIVE_NOTICE_GRACE`) for that notice before the backlog lane takes it: sent as backlog, it
queued at the collector behind the whole backlog (bench/replay.py: a live block at the end of a
drain answered after 256 ms, the run's p99). One sealed by another process (backfill, `outbox
resend`) goes out as backlog after that moment, or once a newer block is said live.

The publisher (edge_agent.shell.publisher) owns the session and calls these on its one event
loop; nothing here touches MQTT.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Final

import structlog

from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_reads import StoredBlock
from specs.ack import Ack

log = structlog.get_logger("edge_agent.publisher")

_BACKLOG_CHUNK: Final = 32
# How long a block newer than every live one waits for the sealer's notice: the notice comes
# right after the commit, so this only needs to outlast a busy event loop.
_LIVE_NOTICE_GRACE: Final = 1.0


class Lanes:
    """The live and backlog lanes: blocks to send, blocks in flight, blocks owed again."""

    def __init__(self, window: int) -> None:
        self._window = window
        self._live: deque[int] = deque(maxlen=window * 4)
        self._owed: deque[int] = deque()
        # seq -> (monotonic send time, send order) of blocks waiting for an ACK.
        self._sent: dict[int, tuple[float, int]] = {}
        self._sent_live: set[int] = set()  # those of them sent in the live lane
        self._sends = 0
        self._backlog_acked_at = 0.0  # when an ACK last answered a backlog-lane block
        self._cursor = 0
        self._newest_live = 0  # the newest seq said live this session
        # A block newer than every live one that the backlog lane leaves for its live notice,
        # and since when (monotonic).
        self._held: tuple[int, float] | None = None
        self.live_moved = asyncio.Event()  # set when a live block is answered or given up

    def add_live(self, seq: int) -> None:
        """A new block is in the outbox: it goes before the backlog."""
        self._live.append(seq)
        self._newest_live = max(self._newest_live, seq)

    @property
    def is_settled(self) -> bool:
        """Whether no live block waits to be sent or for its ACK."""
        return not self._live and not self._sent_live

    @property
    def is_idle(self) -> bool:
        """Whether nothing waits to be sent, to be sent again, or for its ACK."""
        return not (self._sent or self._live or self._owed or self._held)

    async def next_block(self, outbox: Outbox) -> tuple[StoredBlock, bool] | None:
        """The next block to send and whether it goes in the live lane; None: both are full."""
        while self._live and len(self._sent_live) < self._window:
            block = await outbox.get(self._live.popleft())
            if block is not None and block.seq not in self._sent:
                return block, True
        if len(self._sent) - len(self._sent_live) >= self._window:
            return None
        block = await self._next_backlog_block(outbox)
        return None if block is None else (block, False)

    async def _next_backlog_block(self, outbox: Outbox) -> StoredBlock | None:
        while self._owed:
            block = await outbox.get(self._owed.popleft())
            if block is not None and block.seq not in self._sent:
                return block
        while True:
            chunk = await outbox.undelivered(after=self._cursor, limit=_BACKLOG_CHUNK)
            if not chunk:
                self._held = None
                return None
            for block in chunk:
                if block.seq in self._sent:
                    self._cursor = block.seq
                    continue
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
        self._sends += 1
        self._sent[seq] = (time.monotonic(), self._sends)
        if live:
            self._sent_live.add(seq)

    def time_out(self, timeout: float) -> None:
        """Owe again every block that has waited longer than `timeout` for its ACK."""
        now = time.monotonic()
        for seq, (sent_at, _) in list(self._sent.items()):
            if now - sent_at > timeout:
                self._landed(seq)
                self._owed.append(seq)
                log.info("block_ack_timed_out", seq=seq)

    def wait_for(self, longest: float, timeout: float) -> float:
        """How long the send loop may sleep: `longest`, or less when an ACK times out first."""
        if self._held is not None:
            longest = min(longest, max(0.05, self._held[1] + _LIVE_NOTICE_GRACE - time.monotonic()))
        if not self._sent:
            return longest
        oldest = min(sent_at for sent_at, _ in self._sent.values())
        return min(longest, max(0.05, oldest + timeout - time.monotonic()))

    def acked(self, ack: Ack) -> None:
        """`ack` released blocks: they land, and those it shows lost are owed again."""
        # Send order of the block this ACK answers; unknown (already released): assume
        # everything in flight may still arrive and let the ACK timeout catch real losses.
        trigger = self._sent[ack.seq][1] if ack.seq in self._sent else 0
        now = time.monotonic()
        if ack.seq in self._sent and ack.seq not in self._sent_live:
            self._backlog_acked_at = now
        answered_live = ack.seq in self._sent_live
        for seq in [s for s in self._sent if s <= ack.acked_through or s == ack.seq]:
            self._landed(seq)
        self._owe_missing(ack, trigger, answered_live=answered_live)

    def _owe_missing(self, ack: Ack, trigger: int, *, answered_live: bool) -> None:
        """Owe again the blocks in flight that `ack` shows lost.

        Those sent before the one this ACK answers (send order `trigger`) and still missing -
        lost on the way, say published while the collector had not subscribed again after a
        broker restart. A block sent after it may simply still be on its way; a missing block
        never sent (the rest of a backlog below a live block) is not lost, the backlog lane
        gets to it in order, behind live blocks.
        """
        for seq, (sent_at, order) in list(self._sent.items()):
            if order >= trigger or not any(low <= seq <= high for low, high in ack.missing):
                continue
            if answered_live and seq not in self._sent_live and sent_at <= self._backlog_acked_at:
                # The collector takes live blocks before queued backlog ones
                # (collector.ingest.lanes): a backlog block sent before this live one may
                # still wait there. Lost only if the backlog lane has heard no ACK since it
                # was sent (its whole window lost, as after a broker restart).
                continue
            self._landed(seq)
            if seq not in self._owed:
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
        self._live.clear()
        self.live_moved.set()  # what was live is backlog now
        self._cursor = 0
        self._newest_live = 0
        self._held = None

    def rescan(self) -> None:
        """Read the backlog again from its start (another process wrote to the outbox)."""
        self._cursor = 0
