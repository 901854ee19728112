"""The outbox's send and ACK side: blocks read back to be sent, and released by the ACKs.

`Delivery` is the `Outbox`'s `delivery`: the publisher reads undelivered blocks
(`undelivered`, `get`: a block changed on disk is mended or declared lost on the way,
`outbox_damage`), and the ACK handler releases what the collector stored (`mark_delivered`),
compares the chain with it (`chain_position`), answers the seqs it lists missing
(`answer_missing`, `outbox_missing`) and keeps its word on the signing key (`key_left_out`,
`outbox_key_listing`); a block too large for the broker is sealed again in smaller ones on
the way (`seal_smaller`, `outbox_oversize`). It shares the open file with the sealing side
through `OutboxFile` (its lock is taken by every read and write of the file here); what it
keeps besides is its own: the ranges its gap records declare, the ACKs' word on the key, the
announcement event; and it tells the epoch journal when an epoch's first block is delivered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import TypeVar

import structlog

from edge_agent.core.chain import SealedBlock
from edge_agent.core.missing_blocks import AckMark, Span
from edge_agent.shell.outbox_damage import ready_to_send
from edge_agent.shell.outbox_epoch_lock import EpochLock, FreeRun
from edge_agent.shell.outbox_file import OutboxFile
from edge_agent.shell.outbox_key_listing import AckKeys, KeyListing, read_key_left_out
from edge_agent.shell.outbox_missing import Declarations, answer_missing
from edge_agent.shell.outbox_oversize import seal_smaller
from edge_agent.shell.outbox_reads import StoredBlock, read_undelivered, read_undelivered_block
from edge_agent.shell.outbox_replacement import replacement_of
from edge_agent.shell.outbox_room import RoomMaker
from edge_agent.shell.outbox_schema import ACK_MARK_SQL
from edge_agent.shell.outbox_seal import chain_position, release
from edge_agent.shell.outbox_sidecars import EpochJournal
from edge_agent.shell.outbox_transaction import on_thread

_Sealed = TypeVar("_Sealed")

log = structlog.get_logger("edge_agent.outbox")


class Delivery:
    """Reading blocks back to send them, and releasing them on a collector's ACK."""

    def __init__(
        self,
        file: OutboxFile,
        room: RoomMaker,
        journal: EpochJournal | None,
        epoch_lock: EpochLock | None = None,
    ) -> None:
        self._file = file
        # Told when an ACK releases an epoch's first block (`mark_delivered`), and the epoch
        # it was last told of (or gave up telling): once an epoch (each may rewrite it, synced).
        self._journal = journal
        self._told: str | None = None
        # Taken, never waited for, around that rewrite: another process's epoch start or
        # opening journals under it, and a rewrite between its read and rename would drop it.
        self._epoch_lock = epoch_lock
        # The sealing side's room-making: a gap record `answer_missing` or the send path
        # seals, or a block split for the broker (`seal_smaller`), on a full outbox makes
        # room as any seal does (`_sealing`).
        self._room = room
        # Set when an ACK releases a block that announced a key (edge_agent.shell.rotation).
        self.announcement_delivered = asyncio.Event()
        # Seq ranges the current epoch's gap records declare (`answer_missing`).
        self._declared = Declarations()
        # The signing key an ACK's `keys` left out, as the file keeps it (`key_left_out`).
        self._left_out = KeyListing()

    async def load(self) -> None:
        """Take up the ACKs' word on the signing key as the file keeps it (at opening)."""
        self._left_out.found(await on_thread(self._file.db, read_key_left_out))

    async def undelivered(self, *, after: int, limit: int) -> list[StoredBlock]:
        """Undelivered blocks of the current epoch with seq > `after`, oldest first.

        A block changed on disk is mended, or left out and declared lost (`_sendable`).
        """
        file = self._file
        async with file.lock:
            seen = await file.moment()
            blocks = await read_undelivered(file.db, file.epoch, after=after, limit=limit)
        return [
            sent
            for block in blocks
            if (sent := await self._sendable(replace(block, seen=seen))) is not None
        ]

    async def get(self, seq: int) -> StoredBlock | None:
        """The block `seq` of this epoch if it is still undelivered (and as sealed)."""
        file = self._file
        handed = file.handed.take(seq)
        if handed is not None and handed.epoch == file.epoch:
            return handed  # `seen` from before its seal
        async with file.lock:
            seen = await file.moment()
            block = await read_undelivered_block(file.db, file.epoch, seq)
        return None if block is None else await self._sendable(replace(block, seen=seen))

    async def still_held(self, block: StoredBlock) -> StoredBlock | None:
        """`block` as this outbox holds it now, to be published at once; None: it gave way.

        Room made since it was read (`undelivered`, `get`) may have thinned or dropped it,
        and committed the gap record that declares its seq one that will never come: sent
        after that, it reached the collector after its own declaration. Room is made by this
        process's seals and by another's (`edge-agent backfill`), whose commits only the
        file's `PRAGMA data_version` tells of. So it is read again when either moved since
        (and again while they move meanwhile); otherwise it is as read. Nothing is awaited
        after the last look: one commit of another process may still come before the
        publish, as it may while the block is in flight.
        """
        while block.seen != await self._file.moment():
            again = await self.get(block.seq)
            if again is None or again.epoch != block.epoch:
                return None
            block = again
        return block

    async def _sendable(self, block: StoredBlock) -> StoredBlock | None:
        """`block` as sealed and signed with the current key, mended if need be; or None.

        See `outbox_damage.ready_to_send`. A full outbox makes room for the gap record that
        declares a damaged block, as a seal does; when none can be made, it is left for the
        next read.
        """
        file = self._file
        mended, sealed = await ready_to_send(
            file.db,
            file.append,
            block,
            key=lambda: file.key,
            replaced=file.replaced,
            lock=file.lock,
            sealing=self._sealing,
        )
        if sealed is not None:
            file.handed.keep(sealed, seen=None)  # mended: read again before it is sent
        return mended

    async def answer_missing(
        self, epoch: str, missing: Sequence[Span], *, now: float, clock_synced: bool
    ) -> tuple[int, ...]:
        """Answer the seqs an ACK of `epoch` lists missing that this outbox cannot send.

        See `edge_agent.core.missing_blocks`: those it does not hold (and no gap record in it
        declares) are declared lost, one `outbox_corrupt` gap record a run; those it holds as
        delivered are made undelivered again and returned, to be sent again. A full outbox
        makes room first, as a seal does.
        """
        file = self._file
        if epoch != file.epoch:
            return ()
        _, resend = await answer_missing(
            file.db,
            file.lock,
            file.append,
            self._declared,
            file.key,
            sealing=self._sealing,
            epoch=epoch,
            missing=missing,
            now=now,
            clock_synced=clock_synced,
        )
        return resend

    async def seal_smaller(
        self, block: StoredBlock, parts: int, *, now: float, clock_synced: bool
    ) -> tuple[int, ...]:
        """Seal `block`'s records again in `parts` blocks (`outbox_oversize`); their seqs.

        It is too large for the broker. The seqs of the blocks sealed in its place (its gap
        record's first); none when it was not done (released or damaged, or a new epoch has
        sealed it again meanwhile: its seq there is another block's). A full outbox makes room
        first, as a seal does (making room may thin or drop the block itself: then it was not
        done, its readings went into the replacement).
        """
        file = self._file

        async def split() -> tuple[SealedBlock, ...]:
            seq = (block.epoch, block.seq)
            return await seal_smaller(file.db, file.append, file.key, seq, parts, now, clock_synced)

        async with file.lock:
            sealed = await self._sealing(
                split, records=block.readings or 0, now=now, clock_synced=clock_synced
            )
        return tuple(part.seq for part in sealed)

    async def _sealing(
        self,
        seal: Callable[[], Awaitable[_Sealed]],
        *,
        records: int,
        now: float,
        clock_synced: bool,
        keep: Sequence[tuple[str, int]] = (),
    ) -> _Sealed:
        """`seal()` through the sealing side's room-making, as `Outbox.seal_many` seals.

        Not of the delivered blocks `keep` (`RoomMaker.make_room`). The caller holds the
        outbox's lock.
        """
        return await self._room.sealing(
            seal,
            records=records,
            now=now,
            clock_synced=clock_synced,
            evicting=self._file.evicting,  # room is made by thinning and dropping blocks
            keep=keep,
        )

    def on_replaced(self, listener: Callable[[frozenset[int], tuple[int, ...]], None]) -> None:
        """Tell `listener` of each replacement room made in this process seals, once committed.

        The seqs of the current epoch's blocks that gave way (thinned or dropped), and those of
        the blocks sealed in their place: what a publisher needs to follow a live block's
        readings (`Lanes.replaced`). Room made by another process (`edge-agent backfill`) is
        not told: `replacement_of` reads the file for it.
        """
        file = self._file

        def tell(gone: Sequence[tuple[str, int]], sealed: tuple[int, ...]) -> None:
            listener(frozenset(seq for epoch, seq in gone if epoch == file.epoch), sealed)

        self._room.replaced = tell

    async def replacement_of(self, seq: int) -> tuple[int, ...]:
        """The undelivered blocks room made sealed in place of this epoch's block `seq`.

        As the file tells (`outbox_replacement`), by this process or another: the block is
        gone, and its readings may be in them. Empty: gone otherwise, or nothing of it is left
        to send. Every undelivered replacement sealed after it may be read, under the lock.
        """
        file = self._file
        async with file.lock:
            return await on_thread(file.db, replacement_of, file.epoch, seq, file.key)

    async def chain_position(self, seq: int) -> tuple[int, str | None]:
        """The current epoch's last seq, and the hash of its block `seq` if still held."""
        async with self._file.lock:
            state, digest = await on_thread(self._file.db, chain_position, seq)
            self._file.follow(state)
        return state.last_seq, digest

    async def mark_delivered(
        self,
        *,
        epoch: str,
        through: int,
        also: int | None,
        now: float,
        keys: AckKeys = None,
        times: tuple[float, float] | None = None,
    ) -> int:
        """Release what the collector stored: seq <= `through`, + `also`.

        `keys` are the ACK's; `times` its `issued_at` (the collector's clock) and that time
        bounded by the agent's (`missing_blocks.mark_time`), None: not known.
        """
        file = self._file
        async with file.lock:
            if epoch != file.epoch:
                return 0
            for seq in [s for s in file.handed.seqs() if s <= through or s == also]:
                file.handed.take(seq)
            released = await on_thread(
                file.db,
                partial(release, ask_first=epoch != self._told),
                epoch,
                through,
                also,
                now,
                keys,
                file.key.kid,
                times,
            )
            self._left_out.acked(released.left_out, keys, file.key.kid)
            if released.announcements:
                self.announcement_delivered.set()
            if released.first_delivered and epoch != self._told:
                # The epoch's first block is at the collector, and the gap records it carries:
                # a start that finds the file lost no longer declares them again. Its row, not
                # an ACK through 1: the collector counts seq 1 covered once a record declares
                # it (too_large, thinned), while the rows carrying its records may be in flight.
                # Under the lock: a new epoch this process starts is journaled under it too.
                self._told = epoch if await self._tell_journal(epoch) else self._told
            return released.blocks

    async def _tell_journal(self, epoch: str) -> bool:
        """Rewrite the journal without `epoch`'s owed records, if the epoch lock is free now.

        On a thread (the rewrite is synced); whether not to ask again this epoch. Not waited
        for on the ACK path: held (`edge-agent backfill` opening, or starting an epoch), the
        records stay owed, declared again at worst (a `duplicate`), and the next ACK tries
        again (seq 1 stays delivered). A lock file that cannot be made mostly stays so (a
        root-owned 0600 one left by `sudo edge-agent backfill`, a read-only folder): asked again,
        every ACK logged twice while seq 1's row is kept. Not asked again by this process.
        """
        if self._journal is None:
            return False
        write = partial(self._journal.delivered, epoch)
        loop = asyncio.get_running_loop()
        if self._epoch_lock is None:
            await loop.run_in_executor(None, write)
            return True
        outcome = await loop.run_in_executor(None, self._epoch_lock.run_if_free, write)
        if outcome is not FreeRun.DONE:
            log.info("epoch_journal_delivery_deferred", epoch=epoch, lock=outcome.value)
        return outcome is not FreeRun.BUSY

    async def ack_mark(self) -> AckMark | None:
        """The current epoch's highest `acked_through` heard, with its ACK's times, if known.

        Kept in the file, so that a restart does not take a stale ACK for the collector's word.
        """
        async with self._file.lock:
            epoch = self._file.epoch
            async with self._file.db.execute(ACK_MARK_SQL, (epoch,)) as cursor:
                row = await cursor.fetchone()
        if row is None or row[1] is None:
            return None
        # A file from before `bound` kept one time (the collector's, or since 6790f8f one
        # already bounded): it serves as both, and `heard` bounds it when it is used.
        at = float(row[1])
        return AckMark(epoch, int(row[0]), at, at if row[2] is None else float(row[2]))

    @property
    def key_left_out(self) -> float | None:
        """Since when the collector's ACKs leave out the key this outbox signs with.

        It was revoked, retired or never registered there. None: they name it, or have not said.
        """
        return self._left_out.since(self._file.key.kid)

    def report_key_left_out(self) -> None:
        """Log `gateway_key_left_out` again while it stands (at each start: no ACK comes)."""
        self._left_out.report(self._file.key.kid)
