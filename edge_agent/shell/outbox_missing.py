"""The outbox's answer to seqs a collector ACK lists `missing`: what it cannot send is declared.

The decision is the pure core's (`edge_agent.core.missing_blocks`); this module reads what it
needs from the outbox file and carries it out, under the outbox's lock: a row that says
delivered while the collector says it is not stored is made undelivered again (one
transaction), so the send path reads it (and sends it, mended, or declares it); then a run of
seqs the outbox cannot produce is declared lost by a gap record sealed at the head (another:
`released` when retention deleted them after the collector's ACK, else `outbox_corrupt`).
The ranges gap records declare are read once an epoch (`Declarations`), and that first read
takes the lock a window of seqs at a time: on a full outbox it is seconds of decoding.
On a full outbox each transaction makes room as every seal does (`RoomMaker.sealing`): the
rows to send again are undelivered first, and room for that is not made of them, so room
for the gap record is never made by deleting them as delivered (and declaring them
`released`); as undelivered blocks they give way, if they must, as every other does
(thinned or dropped, and declared so).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from typing import Any

import aiosqlite
import structlog

from edge_agent.core.chain import SealedBlock
from edge_agent.core.missing_blocks import MissingVerdict, Span, examined, judge_missing
from edge_agent.shell.outbox_damage import Append, Sealing, corrupt_gap
from edge_agent.shell.outbox_reads import PAYLOAD, WITNESS_COLUMNS, as_sealed, witnesses
from edge_agent.shell.outbox_schema import SEQ_MARKS_SQL
from edge_agent.shell.outbox_seal import read_chain_state
from edge_agent.shell.outbox_transaction import async_write_transaction, on_thread
from specs.block import BlockFormatError, decode_block
from specs.records import GapReason, GapRecord, RecordFormatError
from specs.signing import SigningKey

log = structlog.get_logger("edge_agent.outbox")

_HELD_SQL = (
    "SELECT seq, delivered_at IS NOT NULL FROM blocks WHERE epoch = ? AND seq BETWEEN ? AND ?"
)
# Blocks that may carry gap records: thinned or dropped blocks' replacements, and blocks
# without readings (a damaged block's gap record, a new epoch's first block, this module's).
_GAP_BLOCKS_SQL = (
    f"SELECT seq, {PAYLOAD}, {WITNESS_COLUMNS} FROM blocks WHERE epoch = ? AND seq > ?"
    " AND seq <= ? AND (thinned = 1 OR readings = 0 OR readings IS NULL) ORDER BY seq"
)
# The lowest seq of `epoch` held above one: from the primary key's index alone.
_NEXT_HELD_SQL = "SELECT MIN(seq) FROM blocks WHERE epoch = ? AND seq > ?"
# Declaring blocks looked up per statement: under SQLite's least bound-parameter limit (999).
_LOOKUP_CHUNK = 500
# Seqs read per turn of the outbox's lock when the declarations catch up: SQLite reads every
# row's payload of the window to reach the columns after it, up to 32 blocks of 640 KB.
_WINDOW = 32

Declared = list[tuple[int, int | None]]


def declared_by(rows: Sequence[Sequence[Any]], epoch: str, key: SigningKey) -> dict[int, Declared]:
    """The ranges in `epoch` each row's gap records declare (_GAP_BLOCKS_SQL's rows).

    Only blocks whose row vouches for their payload (`as_sealed`) count: a damaged one is
    declared itself by the send path, and what it declared must not be taken as said.
    """
    declared: dict[int, Declared] = {}
    for seq, held, *witnessed in rows:
        payload = bytes(held)
        if not as_sealed(payload, *witnesses(witnessed), key):
            continue
        try:
            records = decode_block(payload).records
        except (BlockFormatError, RecordFormatError):
            continue
        spans = [
            (record.from_seq, record.to_seq)
            for record in records
            if isinstance(record, GapRecord)
            and record.epoch == epoch
            and record.from_seq is not None
        ]
        if spans:
            declared[int(seq)] = spans
    return declared


async def _next_held(db: aiosqlite.Connection, epoch: str, after: int, goal: int) -> int:
    """The lowest seq of `epoch` held above `after`; `goal` when none is up to it."""
    async with db.execute(_NEXT_HELD_SQL, (epoch, after)) as cursor:
        row = await cursor.fetchone()
    return goal if row is None or row[0] is None else min(goal, int(row[0]))


async def _gap_rows(
    db: aiosqlite.Connection, epoch: str, after: int, upto: int
) -> Sequence[Sequence[Any]]:
    async with db.execute(_GAP_BLOCKS_SQL, (epoch, after, upto)) as cursor:
        return list(await cursor.fetchall())


class Declarations:
    """The seq ranges of the current epoch that gap records held in the outbox declare.

    Read once, then only from blocks sealed since (a gap record is always sealed at the head,
    after the seqs it declares, and travels on whole when its block gives way): the file is
    read again only for a new epoch, or past the last seq read. A declaration lasts as long
    as its block: once retention prunes the block (delivered, then lost again by a collector
    put back to a backup), the seqs it declared are answered as a restart reading the file
    answers them (`released`), not left an open hole at the collector until that restart.
    """

    def __init__(self) -> None:
        self._epoch = ""
        self._through = 0
        # The declaring block's seq -> the ranges its gap records declare.
        self._by_block: dict[int, Declared] = {}

    def _of(self, epoch: str) -> None:
        if epoch != self._epoch:
            self._epoch, self._through, self._by_block = epoch, 0, {}

    def behind(self, epoch: str, last_seq: int) -> bool:
        """Whether blocks of `epoch` up to `last_seq` are not read yet."""
        return epoch != self._epoch or last_seq > self._through

    async def catch_up(
        self, db: aiosqlite.Connection, lock: asyncio.Lock, epoch: str, key: SigningKey
    ) -> None:
        """Read the blocks of `epoch` sealed since the last read, up to the chain's last seq.

        The first read after a start reads every thinned or dropped block's replacement of
        the epoch: on a full outbox thinning has run through, hundreds of MiB, seconds of
        decoding (bench/declarations.py). So the outbox's `lock` is taken only to fetch the
        rows of _WINDOW seqs at a time (from the next seq held: the seqs of a months-old epoch
        are millions, mostly pruned), and they are decoded on a worker thread without it:
        sealing goes on between, and so does the event loop. What changes meanwhile is read
        as in one go: a block sealed lies above the seqs read, a declaring block that gives
        way is sealed again at the head (read there), one pruned is forgotten by `read`.
        The last seq to read is the chain's when it starts: the blocks sealed meanwhile are
        left to `read`, or a sealer that seals a block each turn would be chased for ever.
        """
        goal: int | None = None
        while True:
            async with lock:
                state = await on_thread(db, read_chain_state)
                if state.epoch != epoch:
                    return
                self._of(epoch)
                goal = state.last_seq if goal is None else goal
                after = self._through
                if goal <= after:
                    return
                # From the next seq held: an epoch lasts months, its seqs (millions) mostly
                # pruned long ago, and each window is a turn of the lock and three threads'.
                upto = min(goal, await _next_held(db, epoch, after, goal) - 1 + _WINDOW)
                rows = await _gap_rows(db, epoch, after, upto)
            declared = await asyncio.to_thread(declared_by, rows, epoch, key)
            if (self._epoch, self._through) == (epoch, after):  # else read meanwhile: again
                self._by_block.update(declared)
                self._through = upto

    async def read(
        self, db: aiosqlite.Connection, epoch: str, last_seq: int, key: SigningKey
    ) -> Declared:
        """The ranges declared in `epoch` by blocks still held, reading up to `last_seq`.

        Under the outbox's lock: what `catch_up` left (sealed since) is read here.
        """
        self._of(epoch)
        if last_seq > self._through:
            rows = await _gap_rows(db, epoch, self._through, last_seq)
            self._by_block.update(declared_by(rows, epoch, key))
            self._through = last_seq
        await self._forget_gone(db, epoch)
        return [span for spans in self._by_block.values() for span in spans]

    async def _forget_gone(self, db: aiosqlite.Connection, epoch: str) -> None:
        """Drop the declarations of blocks the outbox no longer holds.

        Pruned, or given way (a thinned or dropped block's gap records are sealed again at the
        head, and read there). Few blocks declare anything; each is looked up by its key.
        """
        seqs = sorted(self._by_block)
        held: set[int] = set()
        for start in range(0, len(seqs), _LOOKUP_CHUNK):
            chunk = seqs[start : start + _LOOKUP_CHUNK]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT seq FROM blocks WHERE epoch = ? AND seq IN ({marks})"
            async with db.execute(sql, (epoch, *chunk)) as cursor:
                held.update(int(row[0]) for row in await cursor.fetchall())
        for seq in seqs:
            if seq not in held:
                del self._by_block[seq]


async def _held(db: aiosqlite.Connection, epoch: str, window: Sequence[Span]) -> dict[int, bool]:
    """The rows of `epoch` in `window`: seq -> whether the row says delivered."""
    held: dict[int, bool] = {}
    for low, high in window:
        async with db.execute(_HELD_SQL, (epoch, low, high)) as cursor:
            held.update((int(seq), bool(delivered)) for seq, delivered in await cursor.fetchall())
    return held


async def answer_missing(
    db: aiosqlite.Connection,
    lock: asyncio.Lock,
    append: Append,
    declarations: Declarations,
    key: SigningKey,
    *,
    sealing: Sealing,
    epoch: str,
    missing: Sequence[Span],
    now: float,
    clock_synced: bool,
) -> tuple[SealedBlock | None, tuple[int, ...]]:
    """Answer the seqs an ACK of `epoch` lists `missing`, under the outbox's `lock`.

    Read first, and written only when there is something to do. Returns the last gap record's
    block (None: nothing declared) and the seqs made undelivered again, to be sent again. When
    the verdict needs declarations not read yet, they are read first with the lock taken a
    window at a time (`Declarations.catch_up`), and the answer taken after. Each write goes
    through `sealing`: a full outbox makes room and the transaction is tried again. The rows
    to send again are made undelivered first, room for it not made of them (`keep`); then the
    gap record is sealed, its verdict taken again inside its transaction (making room may
    prune or thin what was read). Once rows were made undelivered, a gap record that cannot
    be sealed is logged and left to the next ACK that lists its seqs: the rows are still
    returned, as nothing else would send them again.
    """

    async def undeliver(seqs: tuple[int, ...]) -> None:
        async with async_write_transaction(db):
            await _undeliver(db, epoch, seqs)

    async def declare() -> SealedBlock | None:
        async with async_write_transaction(db):
            verdict = await _verdict(db, declarations, key, epoch, missing)
            return await _declare(append, epoch, verdict, now=now, clock_synced=clock_synced)

    async def answer() -> tuple[SealedBlock | None, tuple[int, ...]]:
        verdict = await _verdict(db, declarations, key, epoch, missing)
        resend = verdict.resend
        if resend:
            keep = [(epoch, seq) for seq in resend]  # the collector says it does not hold them
            await sealing(
                lambda: undeliver(resend),
                records=len(resend),
                now=now,
                clock_synced=clock_synced,
                keep=keep,
            )
            log.warning("outbox_delivered_blocks_missing", epoch=epoch, seqs=list(resend))
        if not (verdict.lost or verdict.released):
            return None, resend
        records = len(verdict.lost) + len(verdict.released)
        try:
            sealed = await sealing(declare, records=records, now=now, clock_synced=clock_synced)
        except sqlite3.Error as exc:
            if not resend:
                raise  # nothing done: the caller's to report
            log.exception("outbox_missing_blocks_not_declared", epoch=epoch, error=str(exc))
            return None, resend
        return sealed, resend

    async with lock:
        if not await _unread(db, declarations, epoch, missing):
            return await answer()
    await declarations.catch_up(db, lock, epoch, key)
    async with lock:
        return await answer()


async def _unread(
    db: aiosqlite.Connection, declarations: Declarations, epoch: str, missing: Sequence[Span]
) -> bool:
    """Whether the verdict needs declarations not read yet: a seq `missing` is not held."""
    state = await on_thread(db, read_chain_state)
    if state.epoch != epoch or not declarations.behind(epoch, state.last_seq):
        return False
    window = examined(missing, state.last_seq)
    return bool(window) and bool(judge_missing(window, await _held(db, epoch, window)).lost)


async def _verdict(
    db: aiosqlite.Connection,
    declarations: Declarations,
    key: SigningKey,
    epoch: str,
    missing: Sequence[Span],
) -> MissingVerdict:
    """What to do about the seqs `missing` at the collector (`judge_missing`), read now."""
    state = await on_thread(db, read_chain_state)
    if state.epoch != epoch:
        return MissingVerdict()  # another epoch began meanwhile: the ACK speaks of the old one
    last_seq = state.last_seq
    window = examined(missing, last_seq)
    if not window:
        return MissingVerdict()
    held = await _held(db, epoch, window)
    verdict = judge_missing(window, held)
    if not verdict.lost:
        return verdict
    declared = await declarations.read(db, epoch, last_seq, key)
    async with db.execute(SEQ_MARKS_SQL, (epoch, epoch)) as cursor:
        marks = await cursor.fetchone()  # one row, NULL for a mark not set
    pruned, acked = (0, 0) if marks is None else (int(marks[0] or 0), int(marks[1] or 0))
    return judge_missing(window, held, declared, pruned, acked)


async def _declare(
    append: Append,
    epoch: str,
    verdict: MissingVerdict,
    *,
    now: float,
    clock_synced: bool,
) -> SealedBlock | None:
    """Declare `verdict.lost` and `verdict.released`, in the caller's transaction.

    The gap records (one a run of seqs) go in one block; returns it (None: nothing declared).
    `verdict.resend` was made undelivered before (`answer_missing`).
    """
    if not (verdict.lost or verdict.released):
        return None
    gaps = (
        *(corrupt_gap(epoch, seqs, None, now) for seqs in verdict.lost),
        *(corrupt_gap(epoch, seqs, None, now, GapReason.RELEASED) for seqs in verdict.released),
    )
    sealed = await append(gaps, now=now, clock_synced=clock_synced)
    for low, high in verdict.lost:
        log.error("outbox_missing_blocks_declared", epoch=epoch, from_seq=low, to_seq=high)
    for low, high in verdict.released:
        log.error("released_blocks_declared", epoch=epoch, from_seq=low, to_seq=high)
    return sealed


async def _undeliver(db: aiosqlite.Connection, epoch: str, seqs: Sequence[int]) -> None:
    """Mark the rows of `seqs` undelivered again: each row is written whole, its header too.

    A row whose header alone said delivered is still in the undelivered index: SQLite writes
    the same entry there again, and the file stays sound (`PRAGMA integrity_check`).
    """
    await db.executemany(
        "UPDATE blocks SET delivered_at = NULL WHERE epoch = ? AND seq = ?",
        [(epoch, seq) for seq in seqs],
    )
