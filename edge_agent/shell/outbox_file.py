"""The open outbox file, as its two sides share it: the sealing side and the delivery side.

`Outbox` (the sealing side) and `Delivery` (the send and ACK side) each take the one
`OutboxFile` of the open file, and touch it only through it: the connection and its lock, the
chain's current epoch, the signing key (and the one it replaced), the seq mark and the blocks
handed from memory. Each value has one place, so a new epoch or key seen by one side is the
other side's at once.
"""

from __future__ import annotations

import asyncio

import aiosqlite

from edge_agent.core.chain import ChainState, Identity, SealedBlock
from edge_agent.core.losses import LostReadings
from edge_agent.shell.outbox_reads import HandedBlocks
from edge_agent.shell.outbox_seal import append_block, read_chain_state
from edge_agent.shell.outbox_sidecars import MarkKeeper, SeqMark
from edge_agent.shell.outbox_transaction import on_thread
from specs.records import Record
from specs.signing import SigningKey


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
        self.lock = asyncio.Lock()
        self.identity = identity
        # The seq mark beside the file, written after each commit that seals a block.
        self.marks = MarkKeeper(mark, unsealed)
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
        block, state = await on_thread(
            self.db, append_block, self.identity, self._key, records, now, clock_synced, thinned
        )
        self.follow(state)
        return block
