"""The durable outbox: every sealed block lives here until a collector-signed ACK releases it.

SQLite in WAL mode with synchronous=FULL: a block committed here survives a power cut. Each
seal is ONE `BEGIN IMMEDIATE` transaction that reads the chain state, writes the block and
moves the chain forward, so seq is gap-free and assigned in the transaction that stores the
block. Sealed bytes are never rewritten; resends read the same bytes back.

The file also keeps the agent's alarm state (`alarm_state`), written by the same transaction
that seals the block holding the events that changed it: after any crash the stored state
matches the stored blocks, so an alarm is never raised twice nor left without its clear.

Other processes (`edge-agent backfill`, `edge-agent outbox resend`) write the same file; the
chain state, epoch included, is read inside every seal transaction, never cached.

When the budget (`outbox.max_bytes`, or the disk) is reached, the oldest blocks give way
(delivered ones first, then undelivered ones thinned, then dropped but for their alarm events),
and every loss is named by a gap record sealed in the block that replaces them
(`edge_agent.core.thinning`). When the agent's sequence state proves to be rolled back, or
the file was lost, a new epoch starts and every undelivered block of an older epoch is sealed
again under it.

This module is the `Outbox`, its sealing side. Its send and ACK side is `Outbox.delivery`
(`outbox_delivery`); the two share the open file and its state through one `OutboxFile`
(`outbox_file`). Its other parts live beside it: opening the file (`outbox_open`), the tables
(`outbox_schema`), the seal's statements (`outbox_seal`), reading back (`outbox_reads`), new
epochs and keys (`outbox_rewrite`), making room (`outbox_room`, `outbox_space`), blocks
changed on disk (`outbox_damage`), retention (`outbox_prune`), the ACKs' word on the signing
key (`outbox_key_listing`), what a restart finds (`outbox_recovery`, `outbox_sidecars`).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import aiosqlite
import structlog

from edge_agent.core.ack_check import EpochLeft, how_epoch_left
from edge_agent.core.chain import Identity, SealedBlock
from edge_agent.core.held_readings import Key
from edge_agent.core.losses import NONE_LOST, LostReadings
from edge_agent.shell.outbox_delivery import Delivery
from edge_agent.shell.outbox_epoch_lock import EpochLock
from edge_agent.shell.outbox_file import OutboxFile
from edge_agent.shell.outbox_held import HeldReadings, SpanMemo, find_held
from edge_agent.shell.outbox_prune import prune_delivered
from edge_agent.shell.outbox_reads import (
    AnnouncementState,
    OutboxStats,
    announcement_state,
    read_alarm_state,
    read_data_version,
    read_stats,
)
from edge_agent.shell.outbox_recovery import declared_gap, with_owed
from edge_agent.shell.outbox_rewrite import begin_epoch, reseal_chunk, resign_undelivered, unstarted
from edge_agent.shell.outbox_room import RoomMaker
from edge_agent.shell.outbox_schema import ALARM_STATE_ROW, prepare_file
from edge_agent.shell.outbox_seal import seal_transaction
from edge_agent.shell.outbox_seq_mark import SeqMark
from edge_agent.shell.outbox_sidecars import EpochJournal
from edge_agent.shell.outbox_space import Reserve, SpaceBudget
from specs.records import GapReason, GapRecord, Record
from specs.signing import SigningKey

log = structlog.get_logger("edge_agent.outbox")


class EpochLeftError(Exception):
    """The file has left the epoch a start was to leave, not by a copy put back (`how`).

    For one another process started since (`edge-agent backfill` opening a file it found
    replaced or rolled back), or one the journal does not place. The message is the file's
    epoch now.
    """

    def __init__(self, now_in: str, how: EpochLeft) -> None:
        super().__init__(now_in)
        self.how = how


class Outbox:
    """Sealing blocks into one SQLite file and reading its state back; `delivery` sends them."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        identity: Identity,
        key: SigningKey,
        *,
        budget: SpaceBudget | None = None,
        path: Path,
        journal: EpochJournal | None = None,
        reserve: Reserve | None = None,
        mark: SeqMark | None = None,
        unsealed: LostReadings | None = None,
        epoch_lock: EpochLock | None = None,
    ) -> None:
        self._file = file = OutboxFile(db, identity, key, mark=mark, unsealed=unsealed)
        self.room = RoomMaker(
            db, file.append, budget=budget, path=path, reserve=reserve, key=lambda: file.key
        )
        # The send and ACK side: the publisher's reads and the ACK handler's releases. It makes
        # room through the same RoomMaker (one cap and reserve state; `room.let_go` counts).
        self.delivery = Delivery(file, self.room, journal, epoch_lock)
        self._budget = budget
        self._path = path
        self._journal = journal
        self._epoch_lock = epoch_lock
        self._data_version = 0

    @property
    def epoch(self) -> str:
        """The current epoch (changes only when sequence state was lost)."""
        return self._file.epoch

    def how_left(self, epoch: str, now_in: str | None = None) -> EpochLeft:
        """How the file came to be in `now_in` (its epoch as last followed) from `epoch`.

        Another process's start (`edge-agent backfill` opening the file) journals its epoch
        under the epoch lock before it commits; a file put back under the agent (an older copy
        restored) is in an epoch the journal names before `epoch`. A journal naming either not
        at all (not written on a full disk, or its oldest let go) tells neither.
        """
        journal = self._journal.epochs() if self._journal is not None else ()
        return how_epoch_left(journal, self._file.epoch if now_in is None else now_in, epoch)

    async def _init(self, first_block: Sequence[GapRecord] = ()) -> None:
        """Set the file up; a new file's epoch is journaled with `first_block`, its gaps."""
        file = self._file
        await prepare_file(file.db, self._budget, self._journal, first_block, self.room.reserve)
        self._data_version = await read_data_version(file.db)
        state = await file.chain_state()
        file.marks.found(state.epoch, state.last_seq)
        await self.delivery.load()

    async def seal(
        self,
        records: tuple[Record, ...],
        *,
        now: float,
        clock_synced: bool,
        alarm_state: bytes | None = None,
        backfill_keys: Sequence[tuple[str, str]] = (),
    ) -> SealedBlock:
        """Seal `records` into the next block in ONE immediate transaction.

        `alarm_state`, when given, replaces the stored alarm state in that same transaction:
        the block and the state that produced its alarm events commit together or not at all.
        `backfill_keys` ((point, t) of imported readings) are remembered by the same
        transaction, so an import interrupted anywhere never seals a reading twice.
        A full outbox (or disk) makes room and tries again; sqlite3.Error when it cannot.
        """
        (block,) = await self.seal_many(
            (records,),
            now=now,
            clock_synced=clock_synced,
            alarm_state=alarm_state,
            backfill_keys=backfill_keys,
        )
        return block

    async def seal_many(
        self,
        batches: Sequence[tuple[Record, ...]],
        *,
        now: float,
        clock_synced: bool,
        alarm_state: bytes | None = None,
        backfill_keys: Sequence[tuple[str, str]] = (),
    ) -> list[SealedBlock]:
        """Seal each batch as the next block, all in ONE immediate transaction (as `seal`).

        A group commit: one fsync for every block of the group, for a sealer that fell
        behind its readings (each block is as it would be sealed alone).
        """
        state_row = None if alarm_state is None else (ALARM_STATE_ROW, alarm_state)
        args = (batches, now, clock_synced, state_row, backfill_keys)
        file = self._file
        async with file.lock:
            # Before the seal: room another process makes after it may make these blocks give
            # way before the publisher takes them from memory (`StoredBlock.seen`).
            version = await read_data_version(file.db)
            blocks, state = await self.room.sealing(
                # The key as it is at each attempt: a rotation may come while room is made.
                lambda: file.seal_on_thread(seal_transaction, file.identity, file.key, *args),
                records=sum(map(len, batches)),
                now=now,
                clock_synced=clock_synced,
                evicting=file.evicting,  # room is made by thinning and dropping blocks
            )
            file.follow(state)
            for block in blocks:  # room made by this seal came before them
                file.handed.keep(block, seen=(file.room_made, version))
            return blocks

    # --- epochs ---------------------------------------------------------------------------

    async def start_new_epoch(
        self,
        gaps: Sequence[GapRecord],
        *,
        now: float,
        clock_synced: bool,
        wait: bool = True,
        carry_owed: bool = False,
        leaving: str | None = None,
    ) -> str:
        """Start a new epoch whose first block carries `gaps`; re-seal older blocks under it.

        Used when sequence state proved lost: every undelivered block of an older epoch is
        sealed again in the new one (the collector drops readings it already holds), so no
        block the collector did not store is ever released. With `wait` False a busy epoch lock
        raises OutboxUnavailableError at once (the ACK handler: the next ACK tries again).
        With `carry_owed` the first block carries too what the journal still owes
        (`outbox_recovery.with_owed`), read under the outbox lock and, when this outbox has an
        epoch lock (only `open_outbox` builds one with it), under that lock too, so no other
        process journals in between; an opening passes what it read under that lock itself
        (`recovery_gaps`). With `leaving` (the ACK handler: the epoch an ACK proved rolled
        back or the file has left) a file in another epoch put back under the agent
        (`how_left`) has its epoch declared lost too, as an opening declares it; one in an
        epoch started since, or one the journal does not place, starts none: EpochLeftError,
        the file's epoch followed.
        """
        file = self._file
        # Lock order: the epoch lock, then the outbox lock (open_outbox holds the epoch lock
        # across its seals and this start too). Never the other way: waiting for another
        # process (`edge-agent backfill` checking a large file, up to
        # OUTBOX_EPOCH_LOCK_TIMEOUT) under the outbox lock held every seal and read up.
        # Until its first block commits the journal is ahead of the file: another process
        # opening the outbox meanwhile would take the file for another copy.
        turn = self._epoch_lock.held(wait=wait) if self._epoch_lock else nullcontext()
        async with turn, file.lock:
            # Under the epoch lock (open_outbox's): another process's start (`edge-agent
            # backfill` opening a file it found replaced) between the ACK's judgement and here
            # has left that epoch already, declared it lost and sealed its blocks again; one
            # more would leave its epoch for nothing and declare the one left lost again.
            if leaving is not None and (now_in := (await file.chain_state()).epoch) != leaving:
                if (how := self.how_left(leaving, now_in)) is not EpochLeft.PUT_BACK:
                    raise EpochLeftError(now_in, how)
                # An older copy restored into the live file (`sqlite3 .restore`), or another
                # file put in its place: neither its seqs nor `leaving`'s can be vouched for
                # (`outbox_recovery.recovery_gaps`, `outbox_replaced`).
                log.error("outbox_replaced", path=str(self._path), epoch=now_in, expected=leaving)
                gaps = [*gaps, declared_gap(GapReason.OUTBOX_RESTORED, now_in, 1, now)]
            file.handed.clear()
            epoch = secrets.token_hex(8)
            if carry_owed and self._journal is not None:
                # Read here, in one step with the entry that replaces it: read before the lock,
                # another process's start in between (`edge-agent backfill` opening the file)
                # had what its own entry owes replaced by the list read before it.
                gaps = with_owed(list(gaps), await self._journal.owed_on_thread())
            if self._journal is not None:
                # What its first block declares, kept until the next epoch (a start cut short
                # before it commits; room made below is sealed at the head of the epoch left,
                # maybe at the seqs declared), and the proof it sealed nothing (`begin_epoch`).
                await self._journal.record_on_thread(epoch, gaps, unsealed=True)
            # Its first block is sealed at the head as every block is: a full outbox (a
            # site offline for weeks) makes room for it first. Room made before it commits
            # is sealed in the epoch left (replacements at its head), then again under this.
            begin = partial(begin_epoch, file.db, file.append, epoch, gaps, self._journal)
            try:
                await self.room.sealing(
                    lambda: begin(now=now, clock_synced=clock_synced),
                    records=len(gaps),
                    now=now,
                    clock_synced=clock_synced,
                    evicting=file.evicting,
                )
            except BaseException:  # a cancellation too: the file's epoch followed again
                # Its proof taken back, written again if the file tells (`_sealed_nothing`),
                # a second cancellation meanwhile waited through.
                await unstarted(file.chain_state, self._journal, epoch)
                raise
            log.warning("epoch_started", epoch=epoch, gaps=[g.reason.value for g in gaps])
        await self.reseal_older_epochs(now=now, clock_synced=clock_synced)
        return epoch

    async def reseal_older_epochs(self, *, now: float, clock_synced: bool) -> int:
        """Seal undelivered blocks of older epochs again under the current one; return count.

        Chunked, one transaction per chunk: an interruption leaves the rest for the next call
        (every open calls this), and memory stays bounded whatever the backlog.
        """
        moved = 0
        known = frozenset(self._journal.epochs() if self._journal is not None else ())
        file = self._file
        while True:
            async with file.lock:
                # A chunk takes the pages its rows freed, but its damaged blocks' gap records
                # or a leaf page to split may need more: on a full outbox room is made first
                # (the oldest undelivered, these most often, thinned into replacements sealed
                # under the current epoch) and the chunk read again.
                chunk, _ = await self.room.sealing(
                    lambda: reseal_chunk(
                        file.db,
                        file.append,
                        file.chain_state,
                        file.key,
                        known,
                        now=now,
                        clock_synced=clock_synced,
                    ),
                    records=0,  # not known before the chunk is read
                    now=now,
                    clock_synced=clock_synced,
                    evicting=file.evicting,
                )
            if chunk == 0:
                break
            moved += chunk
        if moved:
            log.warning("older_epoch_blocks_resealed", blocks=moved, epoch=file.epoch)
        return moved

    async def unsealed(self) -> LostReadings:
        """Readings let go unsealed (by a stop on a full disk) and not yet named by a gap."""
        return await self._file.marks.unsealed()

    async def note_unsealed(self, lost: LostReadings, instead_of: LostReadings = NONE_LOST) -> None:
        """Remember (beside the file) readings let go unsealed, in place of `instead_of`."""
        await self._file.marks.let_go(lost, instead_of)

    def stopping_by(self, until: float) -> None:
        """The agent is stopping: no wait for a held seq mark goes past the loop time `until`.

        Those of the stop's own flush, and of the close making the tally changes held back.
        """
        self._file.marks.stopping_by(until)

    async def unsealed_declared(self, named: LostReadings) -> None:
        """Readings `unsealed` said were let go, now named by a gap record: taken off it."""
        await self._file.marks.declared(named)

    # --- reading back ---------------------------------------------------------------------

    async def alarm_state(self) -> bytes | None:
        """The alarm state stored by the last seal that carried one (None before any)."""
        async with self._file.lock:
            return await read_alarm_state(self._file.db)

    async def held_readings(self, keys: Sequence[Key], memo: SpanMemo) -> HeldReadings:
        """What the outbox holds of `keys` ((point, t)), live or imported: `outbox_held`."""
        return await find_held(self._file.db, self._file.lock, self.room, keys, memo)

    async def changed_elsewhere(self) -> bool:
        """Whether another process committed to the file since the last call.

        (`PRAGMA data_version` moves only on other connections' commits.) The epoch is read
        again, so a new epoch started by another process is seen here too.
        """
        file = self._file
        async with file.lock:
            version = await read_data_version(file.db)
            if version == self._data_version:
                return False
            self._data_version = version
            file.handed.clear()
            await file.chain_state()
            return True

    async def stats(self) -> OutboxStats:
        """Counts for `edge-agent status` and the heartbeat."""
        async with self._file.lock:
            return await read_stats(self._file.db)

    # --- retention ------------------------------------------------------------------------

    async def prune(self, *, delivered_before: float) -> int:
        """Delete delivered blocks released before the given time (retention); how many.

        The keys of the readings they imported go with them (`outbox_prune`), and every key
        once no block held carries an imported reading. A chunk a transaction, the lock
        taken for each: seals go on between them.
        """
        return await prune_delivered(self._file.db, delivered_before, self._file.lock)

    # --- key rotation ---------------------------------------------------------------------

    async def announcement_state(self, kid: str) -> AnnouncementState | None:
        """How the collector answered the announcements of key `kid` (None: none sealed)."""
        async with self._file.lock:
            return await announcement_state(self._file.db, kid)

    async def use_key(self, key: SigningKey) -> int:
        """Sign from now on with `key`, and sign every undelivered block again with it.

        The blocks' bytes stay as sealed (the signature is detached): only `alg`, `kid` and
        `sig` change, so a backlog sealed before a rotation is not left to the old key, which
        the collector retires after its overlap window. A block whose payload changed on disk
        is not (`outbox_rewrite.resign_chunk`). Returns the blocks signed again.
        """
        replaced = self._file.use_key(key)
        return await resign_undelivered(self._file.db, key, replaced, self._file.lock)
