"""The outbox's answer to seqs a collector ACK lists `missing`: what it cannot send is declared.

The decision is the pure core's (`edge_agent.core.missing_blocks`); this module reads what it
needs from the outbox file and carries it out, inside the outbox's lock and one transaction:
a run of seqs the outbox cannot produce is declared lost by a gap record sealed at the head
(`released` when retention deleted them after the collector's ACK, else `outbox_corrupt`),
and a row that says delivered while the collector says it is not stored is
made undelivered again, so the send path reads it (and sends it, mended, or declares it).
"""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite
import structlog

from edge_agent.core.chain import SealedBlock
from edge_agent.core.missing_blocks import MissingVerdict, Span, examined, judge_missing
from edge_agent.shell.outbox_damage import Append, corrupt_gap
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
    " AND (thinned = 1 OR readings = 0 OR readings IS NULL) ORDER BY seq"
)
# Declaring blocks looked up per statement: under SQLite's least bound-parameter limit (999).
_LOOKUP_CHUNK = 500


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
        self._by_block: dict[int, list[tuple[int, int | None]]] = {}

    async def read(
        self, db: aiosqlite.Connection, epoch: str, last_seq: int, key: SigningKey
    ) -> list[tuple[int, int | None]]:
        """The ranges declared in `epoch` by blocks still held, reading up to `last_seq`.

        Only blocks whose row vouches for their payload (`as_sealed`) count: a damaged one is
        declared itself by the send path, and what it declared must not be taken as said.
        """
        if epoch != self._epoch:
            self._epoch, self._through, self._by_block = epoch, 0, {}
        if last_seq > self._through:
            await self._read_sealed(db, epoch, last_seq, key)
        await self._forget_gone(db, epoch)
        return [span for spans in self._by_block.values() for span in spans]

    async def _read_sealed(
        self, db: aiosqlite.Connection, epoch: str, last_seq: int, key: SigningKey
    ) -> None:
        """Take the declarations of the blocks sealed after the last read, up to `last_seq`."""
        async with db.execute(_GAP_BLOCKS_SQL, (epoch, self._through)) as cursor:
            rows = await cursor.fetchall()
        for seq, held, *witnessed in rows:
            if int(seq) > last_seq:
                break
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
                self._by_block[int(seq)] = spans
        self._through = last_seq

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
    append: Append,
    declarations: Declarations,
    key: SigningKey,
    *,
    epoch: str,
    missing: Sequence[Span],
    now: float,
    clock_synced: bool,
) -> tuple[SealedBlock | None, tuple[int, ...]]:
    """Answer the seqs an ACK of `epoch` lists `missing` (under the outbox's lock).

    Read first, and written (one transaction, the verdict taken again inside it) only when
    there is something to do. Returns the last gap record's block (None: nothing declared) and
    the seqs made undelivered again, to be sent again.
    """
    if not await _verdict(db, declarations, key, epoch, missing):
        return None, ()
    async with async_write_transaction(db):
        verdict = await _verdict(db, declarations, key, epoch, missing)
        sealed = await _carry_out(db, append, epoch, verdict, now=now, clock_synced=clock_synced)
    return sealed, verdict.resend


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


async def _carry_out(
    db: aiosqlite.Connection,
    append: Append,
    epoch: str,
    verdict: MissingVerdict,
    *,
    now: float,
    clock_synced: bool,
) -> SealedBlock | None:
    """Declare `verdict.lost` and make `verdict.resend` undelivered, in the caller's transaction.

    The gap records (one a run of seqs) go in one block; returns it (None: nothing declared).
    """
    sealed = None
    if verdict.lost or verdict.released:
        gaps = (
            *(corrupt_gap(epoch, seqs, None, now) for seqs in verdict.lost),
            *(corrupt_gap(epoch, seqs, None, now, GapReason.RELEASED) for seqs in verdict.released),
        )
        sealed = await append(gaps, now=now, clock_synced=clock_synced)
        for low, high in verdict.lost:
            log.error("outbox_missing_blocks_declared", epoch=epoch, from_seq=low, to_seq=high)
        for low, high in verdict.released:
            log.error("released_blocks_declared", epoch=epoch, from_seq=low, to_seq=high)
    if verdict.resend:
        await _undeliver(db, epoch, verdict.resend)
        log.warning("outbox_delivered_blocks_missing", epoch=epoch, seqs=list(verdict.resend))
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
