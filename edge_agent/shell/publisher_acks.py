"""What a collector ACK on `down/ack` does: judged, then released, rolled back or answered.

An ACK is taken only when the collector's signature holds and it names this gateway and the
outbox's epoch; anyone who can publish there can forge the rest, so a rejected one costs a
bounded number of log lines. A valid ACK releases what it proves stored (`Delivery.mark_delivered`)
or, when it proves the agent's sequence state rolled back, starts a new epoch; then what it
lists missing that the outbox cannot send is declared lost, or owed again
(`edge_agent.core.missing_blocks`; a lower `acked_through` than heard before is answered only
from a collector gone back, its database restored from a backup). The publisher
(edge_agent.shell.publisher) owns the session and hands each ACK here; the lanes
(edge_agent.shell.publisher_lanes) learn what it answered.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable

import structlog
from paho.mqtt.properties import Properties

from edge_agent.core.ack_check import EpochLeft, Rollback, judge_ack
from edge_agent.core.missing_blocks import AckMark, heard, mark_time
from edge_agent.core.trusted_keys import TrustedKeys
from edge_agent.shell.host import clock_synchronized
from edge_agent.shell.outbox import EpochLeftError, Outbox
from edge_agent.shell.outbox_recovery import OutboxUnavailableError, declared_gap
from edge_agent.shell.publisher_lanes import Lanes
from hostkit.log_limit import LineLimit, warn_limited
from specs.ack import MIN_MESSAGE_BYTES, Ack, AckFormatError, decode_ack
from specs.records import GapReason, parse_iso_time
from specs.signing import SignatureError, VerifyKey, signature_from_properties
from specs.topics import GatewayTopics

log = structlog.get_logger("edge_agent.publisher")


class AckTaker:
    """Takes each ACK the session receives; `wake` is set when there is something to send."""

    def __init__(
        self,
        outbox: Outbox,
        topics: GatewayTopics,
        collector_key: VerifyKey | TrustedKeys,
        *,
        lanes: Lanes,
        wake: asyncio.Event,
        rejected_lines: LineLimit,
        clock_synced: Callable[[], bool] = clock_synchronized,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._outbox = outbox
        self._topics = topics
        self._collector_key = collector_key
        self._lanes = lanes
        self._wake = wake
        self._rejected_lines = rejected_lines
        # The agent's clock and whether it is synchronized, which bound ACK times (`heard`).
        self._clock_synced = clock_synced
        self._clock = clock
        # When the collector last answered a block with an ACK (wall clock; `edge-agent status`).
        self.last_ack: float | None = None
        # ACKs that could not be recorded (a full disk) this run, and when the last came.
        self.not_recorded: tuple[int, float | None] = (0, None)
        # The highest `acked_through` an ACK said, its epoch and time (`_answer_missing`),
        # read from the outbox at the first ACK: a mark started afresh at each start took the
        # first ACK after it for the collector's word, a stale one too.
        self._ack_mark: AckMark | None = None
        self._mark_read = False
        # The largest payload the collector takes, as the latest ACK that said one said (None:
        # none has, collectors before `max_message_bytes`): it answers a larger one with no ACK.
        # An ACK without it (an older collector of a shared group, a downgrade) keeps it: a
        # smaller block is always taken. One below `least_limit` is ignored (`_take_limit`).
        self.collector_limit: int | None = None
        self.least_limit = MIN_MESSAGE_BYTES  # a test may lower it: no block sealed reaches it
        self._below_least_logged = False

    def _ack_rejected(self, reason: str, **fields: object) -> None:
        # Anyone who can publish on down/ack can forge these: a bounded number of lines.
        lines = self._rejected_lines
        warn_limited(
            log, lines, reason, "ack_rejected", "acks_rejected_unlogged", reason=reason, **fields
        )

    def _take_limit(self, said: int | None) -> None:
        if said is None:
            return
        if said >= self.least_limit:
            self.collector_limit = said
        elif not self._below_least_logged:
            # Below what any collector's config takes (a third-party or misconfigured one):
            # split for it, blocks would shrink to one record each, none of them ever sent.
            # The ACK still releases blocks; a collector says it in each, so logged once.
            self._below_least_logged = True
            log.warning("collector_limit_below_least", limit=said, least=self.least_limit)

    async def on_ack(self, payload: bytes, properties: Properties | None) -> None:
        """Judge one ACK and apply it; never raises for a bad one.

        Logged and left for the collector's next ACK, the outbox as it is: a full disk, a new
        epoch that cannot be started now.
        """
        user = getattr(properties, "UserProperty", None)
        try:
            self._collector_key.verify(signature_from_properties(user), payload)
            ack = decode_ack(payload)
        except (SignatureError, AckFormatError) as exc:
            self._ack_rejected(str(exc))
            return
        if ack.gateway != self._topics.gateway or ack.epoch != self._outbox.epoch:
            self._ack_rejected("not for this gateway or epoch", epoch=ack.epoch)
            return
        self._take_limit(ack.max_message_bytes)
        if not self._mark_read:
            self._ack_mark = await self._outbox.delivery.ack_mark()
            self._mark_read = True
        try:
            released = await self._release(ack)
        except sqlite3.Error as exc:
            # A full disk must not stop the uplink: the block stays undelivered, is sent
            # again when its wait for an ACK is over, and the collector answers it again.
            self._not_recorded(exc, ack.seq)
            return
        if not released:
            return
        if ack.seq is not None:  # not a key notice, which answers no block (contract.md §ACK)
            self.last_ack = time.time()
        self._lanes.acked(ack)
        await self._answer_missing(ack)
        self._wake.set()

    def _not_recorded(self, exc: sqlite3.Error, seq: int | None) -> None:
        log.warning("ack_not_recorded", error=str(exc), seq=seq)
        self.not_recorded = (self.not_recorded[0] + 1, time.time())

    async def _answer_missing(self, ack: Ack) -> None:
        """Declare what `ack` lists missing that the outbox cannot send; owe again what it can.

        `edge_agent.core.missing_blocks`: a seq the outbox does not hold would otherwise stay
        an open hole at the collector for ever, its readings neither stored nor declared.
        """
        issued_at = parse_iso_time(ack.issued_at)  # decode_ack refused one that is no time
        before = self._ack_mark
        self._ack_mark, answered = heard(
            before, ack.epoch, ack.acked_through, issued_at, self._synced_now()
        )
        if answered and before is not None and self._ack_mark.acked_through < before.acked_through:
            log.warning(
                "collector_acked_through_went_back",
                epoch=ack.epoch,
                acked_through=ack.acked_through,
                heard=before.acked_through,
                missing=[list(span) for span in ack.missing[:4]],
            )
        if not answered or not ack.missing:
            return
        try:
            resend = await self._outbox.delivery.answer_missing(
                ack.epoch, ack.missing, now=time.time(), clock_synced=clock_synchronized()
            )
        except sqlite3.Error as exc:
            # As a release that cannot be recorded: the next ACK that lists them asks again.
            self._not_recorded(exc, ack.seq)
            return
        self._lanes.owe(resend)

    async def _release(self, ack: Ack) -> bool:
        """Mark what the ACK proves stored; on a proven rollback start a new epoch instead."""
        last_seq, local_hash = await self._outbox.delivery.chain_position(ack.acked_through)
        if self._outbox.epoch != ack.epoch:  # the file's, followed by chain_position
            if (how := self._outbox.how_left(ack.epoch)) is EpochLeft.PUT_BACK:
                # The file put back under the agent (an older copy restored): the blocks it
                # sealed in the ACK's epoch are gone. Dropped, the ACK left them declared by
                # nobody; a new epoch declares them (and the file's) as an opening would.
                await self._start_epoch(ack)
            else:
                self._epoch_left(ack, how)
            return False
        verdict = judge_ack(ack, last_seq=last_seq, local_hash=local_hash)
        if isinstance(verdict, Rollback):
            log.error("sequence_rollback_detected", epoch=ack.epoch, why=verdict.why)
            await self._start_epoch(ack)
            return False
        issued_at = parse_iso_time(ack.issued_at)  # decode_ack refused one that is no time
        await self._outbox.delivery.mark_delivered(
            epoch=ack.epoch,
            through=verdict.through,
            also=verdict.also,
            now=time.time(),
            keys=ack.keys,
            times=(issued_at, mark_time(issued_at, self._synced_now())),
        )
        return True

    async def _start_epoch(self, ack: Ack) -> None:
        """Start a new epoch leaving `ack.epoch`, declared lost from seq 1 in its first block."""
        now = time.time()
        left = self._outbox.epoch
        try:
            await self._outbox.start_new_epoch(
                [declared_gap(GapReason.OUTBOX_RESTORED, ack.epoch, 1, now)],
                now=now,
                clock_synced=clock_synchronized(),
                # The journal's still-owed records carried on as an opening carries them:
                # the first block carrying them may not be delivered (its seq 1 gave way),
                # and this start's entry replaces them, so a later loss of the file would
                # declare no more. Read under the epoch lock (another process journals
                # under it too), not here before it is taken.
                carry_owed=True,
                # Not waited for: this runs in the receive loop, which would take no ACK
                # or command while another process (`edge-agent backfill` checking a
                # large file) holds the epoch lock, up to OUTBOX_EPOCH_LOCK_TIMEOUT.
                wait=False,
                leaving=ack.epoch,
            )
        except EpochLeftError as exc:
            self._epoch_left(ack, exc.how)
            return
        except OutboxUnavailableError as exc:
            # The epoch lock busy (`edge-agent backfill` opening the outbox), or the
            # journal's proof not taken back (`begin_epoch`), nothing changed: as a release
            # that cannot be recorded, the outbox and the lanes stay as they are and the
            # collector's next ACK proves the rollback again.
            # Raised, it ended the publisher task, and the agent with it.
            log.warning("epoch_not_started", epoch=ack.epoch, error=str(exc))
            return
        except sqlite3.Error:
            if self._outbox.epoch != left:
                # Started, its first block committed; sealing the older epochs' blocks again
                # failed after (`ack_not_recorded`; the next start or opening seals them).
                # The lanes' cursor is past that first block: sent at a reconnect only.
                self._send_anew()
            raise
        self._send_anew()

    def _epoch_left(self, ack: Ack, how: EpochLeft) -> None:
        """`ack` is of an epoch the file has left since `on_ack` checked it: dropped.

        Another process started one (`edge-agent backfill` opening a file it found replaced
        or rolled back): it declared that epoch lost and sealed its blocks again. Judged
        against the new epoch's chain, the ACK proved a rollback of nothing, and a start left
        that epoch for one more, declaring the old one lost again. Refused as an ACK of
        another epoch is; the lanes are forgotten as for any new epoch (the publisher's
        rescan would not: the epoch is followed here first).
        """
        outbox_epoch = self._outbox.epoch
        if how is EpochLeft.UNPLACED:
            # The journal names one of the two epochs or neither: such a start whose journal
            # write failed (a full disk), or a copy put back. Declared lost here, the former's
            # epoch (its blocks sealed again in it) would be declared falsely, its predecessor
            # twice; dropped, a copy put back is declared by the next opening (recovery_gaps).
            log.warning("ack_epoch_unplaced", epoch=ack.epoch, outbox_epoch=outbox_epoch)
        self._ack_rejected(
            "for an epoch the outbox has left", epoch=ack.epoch, outbox_epoch=outbox_epoch
        )
        self._send_anew()

    def _send_anew(self) -> None:
        """A new epoch: the lanes forgotten, the publisher woken to send it from scratch."""
        self._lanes.forget()
        self._wake.set()

    def _synced_now(self) -> float | None:
        """The agent's clock, when synchronized: no ACK it holds was issued later (`heard`)."""
        return self._clock() if self._clock_synced() else None
