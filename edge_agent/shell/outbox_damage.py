"""A block whose row changed on disk: mended while its payload is as sealed, else declared lost.

A bad flash sector or a torn write can change a block's row (quick_check reads no blob). The
row's witnesses (its digest, its signature: `as_sealed`) say whether its payload is still the
one sealed: then its digest and signature are made again (`mend_or_declare`); else the block
gives way to an `outbox_corrupt` gap record naming its seq (`declare_damaged`). The send path
(`ready_to_send`), making room (`outbox_room`) and sealing an abandoned epoch again
(`outbox_rewrite`) meet such blocks, and all three go this way.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

import aiosqlite
import structlog

from edge_agent.core.chain import SealedBlock
from edge_agent.shell.host import clock_synchronized
from edge_agent.shell.outbox_reads import StoredBlock, signed_as_read, signed_by
from edge_agent.shell.outbox_transaction import async_write_transaction
from specs.block import block_hash
from specs.records import GapReason, GapRecord, Record, iso_time
from specs.signing import SigningKey

log = structlog.get_logger("edge_agent.outbox")


class Append(Protocol):
    """Seal one block inside the caller's open transaction (`OutboxFile.append`)."""

    def __call__(
        self, records: tuple[Record, ...], *, now: float, clock_synced: bool, thinned: bool = ...
    ) -> Awaitable[SealedBlock]:
        """Seal `records` as the next block; `thinned` marks a replacement."""
        ...


async def declare_damaged(
    db: aiosqlite.Connection,
    append: Append,
    block: tuple[str, int, int | None],
    *,
    now: float,
    clock_synced: bool,
) -> SealedBlock | None:
    """Declare a block whose bytes changed on disk lost, inside the caller's transaction.

    `block` (epoch, seq, readings), whose row no longer vouches for its payload (`as_sealed`),
    gives way to an `outbox_corrupt` gap record naming its seq. A bad flash sector or a torn
    write changed them (quick_check reads no blob): the collector would reject it at every
    resend, and it cannot be decoded to be thinned. Returns the gap record's block, or None
    when the block was released or declared already.
    """
    epoch, seq, readings = block
    cursor = await db.execute(
        "DELETE FROM blocks WHERE epoch = ? AND seq = ? AND delivered_at IS NULL", (epoch, seq)
    )
    if cursor.rowcount != 1:
        return None
    sealed = await append(
        (corrupt_gap(epoch, (seq, seq), readings, now),), now=now, clock_synced=clock_synced
    )
    log.error("outbox_block_damaged", epoch=epoch, seq=seq, lost=readings)
    return sealed


async def declare_unplaced(
    append: Append, damaged: tuple[str, int, int | None], *, now: float, clock_synced: bool
) -> SealedBlock:
    """A damaged row whose epoch column names no epoch used here: its epoch changed on disk too.

    `damaged` (epoch, seq, readings) as the row reads. It was a block of the file's current
    epoch most likely (an older epoch's undelivered blocks are sealed again at every open), at
    a seq its row may no longer tell. Declared under the epoch its damage wrote, the gap
    record named seqs of an epoch that never was (the collector then waited for that epoch's
    lower seqs for ever, or refused the record for its bytes) and left the block's own seq an
    open hole, never declared. So its readings are declared lost with no seqs, inside the
    caller's transaction; the collector's ACK names the seq it misses, and the agent declares
    that one (`edge_agent.core.missing_blocks`).
    """
    named, seq, readings = damaged
    sealed = await append(
        (corrupt_gap(None, None, readings, now),), now=now, clock_synced=clock_synced
    )
    log.error("outbox_block_damaged", epoch=None, seq=None, named=[named, seq], lost=readings)
    return sealed


def corrupt_gap(
    epoch: str | None,
    seqs: tuple[int, int] | None,
    lost: int | None,
    now: float,
    reason: GapReason = GapReason.OUTBOX_CORRUPT,
) -> GapRecord:
    """An `outbox_corrupt` gap record (or `reason`): `lost` readings, seqs `seqs` of `epoch`.

    `seqs` None names no seqs (and no epoch): a row whose epoch column changed on disk with
    both its witnesses tells neither where it was nor what it held. `reason` `released`:
    seqs the outbox deleted after the collector ACKed them (`outbox_missing`).
    """
    low, high = (None, None) if seqs is None else seqs
    return GapRecord(
        t=iso_time(now),
        reason=reason,
        lost=lost,
        epoch=None if seqs is None else epoch,
        from_seq=low,
        to_seq=high,
    )


async def mend_or_declare(
    db: aiosqlite.Connection,
    append: Append,
    block: StoredBlock,
    keys: tuple[SigningKey, SigningKey | None],
    *,
    now: float,
    clock_synced: bool,
) -> tuple[StoredBlock | None, SealedBlock | None]:
    """A block read back to be sent whose digest or signature (by `key`) does not match it.

    `keys`: the key that signs now, and the one the last rotation replaced (its signature
    vouches for the bytes as well). Inside the caller's transaction. While its payload is as
    sealed (`as_sealed`), its digest is written back and, unless `key` verifies its signature,
    a signature made again with `key` (the signature is detached, as after a key rotation): the
    block as it now stands is returned, to be sent. Else it is declared lost
    (`declare_damaged`) and the gap record's block returned. (None, None): it was released or
    declared meanwhile.
    """
    key, replaced = keys
    signed = signed_by(key, block.signature, block.payload)
    vouched = signed or (
        replaced is not None and signed_by(replaced, block.signature, block.payload)
    )
    if not (block.intact or vouched):
        damaged = (block.epoch, block.seq, block.readings)
        return None, await declare_damaged(db, append, damaged, now=now, clock_synced=clock_synced)
    signature = block.signature if signed else key.sign(block.payload)
    cursor = await db.execute(
        "UPDATE blocks SET digest = ?, alg = ?, kid = ?, sig = ?"
        " WHERE epoch = ? AND seq = ? AND delivered_at IS NULL",
        (
            block_hash(block.payload),
            signature.alg,
            signature.kid,
            signature.sig,
            block.epoch,
            block.seq,
        ),
    )
    if cursor.rowcount != 1:
        return None, None
    log.warning(
        "outbox_block_mended",
        epoch=block.epoch,
        seq=block.seq,
        digest_restored=not block.intact,
        signed_again=not signed,
    )
    return dataclasses.replace(block, signature=signature, intact=True), None


_Sealed = TypeVar("_Sealed")


class Sealing(Protocol):
    """`seal()`, room made on a full outbox and `seal()` again (`RoomMaker.sealing`).

    Room is not made of the delivered blocks `keep` (epoch, seq).
    """

    def __call__(
        self,
        seal: Callable[[], Awaitable[_Sealed]],
        *,
        records: int,
        now: float,
        clock_synced: bool,
        keep: Sequence[tuple[str, int]] = (),
    ) -> Awaitable[_Sealed]:
        """What `seal()` returned, once it committed; sqlite3.Error when no room can be made."""
        ...


async def ready_to_send(
    db: aiosqlite.Connection,
    append: Append,
    block: StoredBlock,
    *,
    key: Callable[[], SigningKey],
    replaced: SigningKey | None,
    lock: AbstractAsyncContextManager[Any],
    sealing: Sealing,
) -> tuple[StoredBlock | None, SealedBlock | None]:
    """`block` as sealed and signed with `key()`, mended if need be; or None, and a gap's block.

    `replaced`: the key the last rotation replaced. A block that needs mending is mended or
    declared lost in one transaction under `lock` (`mend_or_declare`): the block to send, or
    None and the block that declared it. On a full outbox room is made first and the
    transaction tried again (`sealing`: a gap record is sealed as every block is); when no
    room can be made it is left for the next read (None, None).
    """
    ready = signed_as_read(block, key(), replaced)
    if ready is not None:
        return ready, None
    now, synced = time.time(), clock_synchronized()

    async def mend() -> tuple[StoredBlock | None, SealedBlock | None]:
        # Tried again after room is made, which may have thinned, dropped or declared the
        # block meanwhile: its row is then gone and (None, None) says so.
        async with async_write_transaction(db):
            return await mend_or_declare(
                db, append, block, (key(), replaced), now=now, clock_synced=synced
            )

    try:
        async with lock:
            return await sealing(mend, records=1, now=now, clock_synced=synced)
    except sqlite3.Error as exc:
        log.exception("outbox_block_damaged_not_mended", seq=block.seq, error=str(exc))
        return None, None
