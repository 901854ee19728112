"""The open outbox file, as its two sides share it: the sealing side and the delivery side.

`Outbox` (the sealing side) and `Delivery` (the send and ACK side) each take the one
`OutboxFile` of the open file, and touch it only through it: the connection and its lock, the
chain's current epoch, the signing key (and the one it replaced), the seq mark and the blocks
handed from memory. Each value has one place, so a new epoch or key seen by one side is the
other side's at once.

Every block sealed here is sealed through `append` or `seal_on_thread`, under `lock`; before
the lock is given back after one, the seq mark is written with the file's newest seq as the
file then says it (`_mark_newest`). So the mark follows every seal, the blocks sealed while
room is made for a seal that then seals nothing (a split whose block gave way, a seal that
found no room) or another process's included, and a transaction rolled back never moves it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TypeVar

import aiosqlite
import structlog

from edge_agent.core.chain import ChainState, Identity, SealedBlock
from edge_agent.core.losses import LostReadings
from edge_agent.shell.outbox_reads import HandedBlocks, read_data_version
from edge_agent.shell.outbox_seal import append_block, read_chain_state
from edge_agent.shell.outbox_seq_mark import MarkKeeper, SeqMark
from edge_agent.shell.outbox_transaction import on_thread
from specs.records import Record
from specs.signing import SigningKey

log = structlog.get_logger("edge_agent.outbox")

_T = TypeVar("_T")


class _MarkingLock(asyncio.Lock):
    """The outbox's lock: `before_release` is awaited before each release by `async with`."""

    def __init__(self, before_release: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self._before_release = before_release

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._before_release()
        finally:
            self.release()


class OutboxFile:
    """The connection to the outbox file and the state both of its sides read and move."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        identity: Identity,
        key: SigningKey,
        *,
        mark: SeqMark | None = None,
        unsealed: LostReadings | None = None,
    ) -> None:
        self.db = db
        # One connection serves the sealer, the publisher's reads and the ACK handler:
        # without this lock an ACK's commit would land inside an open seal transaction.
        # Given back after a seal, it writes the seq mark first (`_mark_newest`).
        self.lock: asyncio.Lock = _MarkingLock(self._mark_newest)
        self.identity = identity
        # The seq mark beside the file, written after each seal (see above).
        self.marks = MarkKeeper(mark, unsealed)
        # A block was sealed (or tried) under the lock since the mark was last written.
        self._sealed = False
        # Blocks just sealed, sent from memory by the publisher's `Delivery.get`.
        self.handed = HandedBlocks()
        # How many times room has been made here: a block read before may have given way
        # since (`Delivery.still_held`).
        self.room_made = 0
        self._key = key
        # The key `use_key` replaced: blocks read back before its new signature still carry
        # the old one, which vouches for their bytes as well.
        self._replaced: SigningKey | None = None
        self._epoch = ""

    @property
    def epoch(self) -> str:
        """The chain's current epoch, as the file last said it."""
        return self._epoch

    @property
    def key(self) -> SigningKey:
        """The key blocks are signed with now."""
        return self._key

    @property
    def replaced(self) -> SigningKey | None:
        """The key `use_key` replaced (None before any rotation)."""
        return self._replaced

    def use_key(self, key: SigningKey) -> SigningKey:
        """Sign with `key` from now on; return the key it replaces.

        Blocks handed from memory are signed with the old one: they go.
        """
        self._replaced, replaced = self._key, self._key
        self._key = key
        self.handed.clear()
        return replaced

    def evicting(self) -> None:
        """Room is about to be made (`RoomMaker.sealing`): undelivered blocks may give way."""
        self.handed.clear()
        self.room_made += 1

    async def moment(self) -> tuple[int, int]:
        """Where the file stands: how often room was made here, and `PRAGMA data_version`.

        The second moves when another connection commits (`edge-agent backfill` makes room
        too). The count is taken after the pragma's await, so that nothing this process did
        in between goes unseen by one who acts on it at once (`Delivery.still_held`).
        """
        version = await read_data_version(self.db)
        return self.room_made, version

    def follow(self, state: ChainState) -> None:
        """Take the epoch of a chain state just read or written in the file.

        Another process may have started a new epoch: the file, not memory, is the truth.
        """
        self._epoch = state.epoch

    async def chain_state(self) -> ChainState:
        """The chain state as the file has it now (its epoch followed)."""
        state = await on_thread(self.db, read_chain_state)
        self.follow(state)
        return state

    async def append(
        self,
        records: tuple[Record, ...],
        *,
        now: float,
        clock_synced: bool,
        thinned: bool = False,
    ) -> SealedBlock:
        """Seal one block inside the caller's open transaction (`outbox_damage.Append`)."""
        self._sealed = True
        block, state = await on_thread(
            self.db, append_block, self.identity, self._key, records, now, clock_synced, thinned
        )
        self.follow(state)
        return block

    async def seal_on_thread(self, seal: Callable[..., _T], *args: object) -> _T:
        """`seal(connection, *args)` on the connection's thread: a transaction that seals.

        `Outbox.seal_many`'s (`outbox_seal.seal_transaction`); the mark follows it as it
        follows `append`.
        """
        self._sealed = True
        return await on_thread(self.db, seal, *args)

    async def _mark_newest(self) -> None:
        """After a seal under the lock: the file's newest seq, as it now stands, is the mark.

        Read from the file, not taken from the blocks sealed: room made for a seal is sealed
        too (thinned and dropped blocks' replacements, gap records), whether or not that seal
        then sealed anything, and a transaction rolled back sealed nothing.
        """
        if not self._sealed:
            return
        try:
            state = await on_thread(self.db, read_chain_state)
        except sqlite3.Error as exc:
            # Raised here it would undo nothing: a committed seal would be taken for a failed
            # one and sealed again. Tried again at the next release.
            log.warning("seq_mark_not_read", error=str(exc))
            return
        self._sealed = False
        await self.marks.sealed(state.epoch, state.last_seq)
