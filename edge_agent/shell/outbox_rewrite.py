"""Undelivered blocks carried over: sealed again under a new epoch, or signed again.

When sequence state proved lost, a new epoch starts and every undelivered block of an older
epoch is sealed again under it (the collector drops readings it already holds), so no block
the collector did not store is ever released. When the gateway's key changes, undelivered
blocks are signed again with it. Each step is one transaction on the outbox's connection,
run by `Outbox` under its lock; a block changed on disk is declared lost (`outbox_damage`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager, suppress
from typing import Any, Final

import aiosqlite
import structlog

from edge_agent.core.chain import ChainState, SealedBlock
from edge_agent.shell.outbox_damage import Append, declare_damaged, declare_unplaced
from edge_agent.shell.outbox_reads import (
    PAYLOAD,
    WITNESS_COLUMNS,
    as_sealed,
    sealed_count,
    witnesses,
)
from edge_agent.shell.outbox_recovery import OutboxUnavailableError
from edge_agent.shell.outbox_sidecars import EpochJournal, ProofStandsError
from edge_agent.shell.outbox_spans import forget_spans
from edge_agent.shell.outbox_transaction import async_write_transaction
from edge_agent.shell.to_its_end import to_its_end
from specs.block import GENESIS, decode_block
from specs.records import GapRecord, Record
from specs.signing import SigningKey

# Blocks of an older epoch are sealed again in groups of at most this many records.
_RESEAL_RECORDS: Final = 2000
_RESEAL_BLOCKS: Final = 64
# Undelivered blocks signed again per transaction when the gateway's key changes.
RESIGN_BLOCKS: Final = 500

log = structlog.get_logger("edge_agent.outbox")


async def begin_epoch(
    db: aiosqlite.Connection,
    append: Append,
    epoch: str,
    gaps: Sequence[GapRecord],
    journal: EpochJournal | None,
    *,
    now: float,
    clock_synced: bool,
) -> SealedBlock:
    """Move the chain to `epoch` and seal its first block, carrying `gaps`: one transaction.

    The `journal`'s proof that `epoch` sealed nothing (written with its entry,
    `EpochJournal.record`) is taken back (synced, on a thread) before the transaction
    commits, so nothing of `epoch` is committed while it stands; so is a proof of an older
    epoch, left the latest when `epoch`'s entry was not written (a full disk: its entry is
    written again first). When it cannot be (`epoch_journal_not_written`, or the journal
    unreadable), nothing is: OutboxUnavailableError, the proof true.
    """
    async with async_write_transaction(db):
        await db.executemany(
            "UPDATE meta SET value = ? WHERE key = ?",
            [(epoch, "epoch"), ("0", "last_seq"), (GENESIS, "last_hash")],
        )
        block = await append(tuple(gaps), now=now, clock_synced=clock_synced)
        if journal is not None:
            # Its entry again if its write failed (room made since): named, `epoch` is
            # declared by a start finding a copy put back; written, an older proof is gone.
            await journal.record_on_thread(epoch, gaps)
            try:
                await journal.sealed_in_on_thread(epoch)
            except ProofStandsError as exc:
                why = f"epoch {epoch}'s first block was not committed and the epoch not started"
                raise OutboxUnavailableError(f"{exc}: {why}; {exc.remedy}") from exc
        return block


async def unstarted(
    chain_state: Callable[[], Awaitable[ChainState]], journal: EpochJournal | None, epoch: str
) -> None:
    """After `epoch`'s `begin_epoch` cut short: its proof that it sealed nothing written again.

    Written when the file tells it is in another epoch (followed either way), to its end
    however often the caller is cancelled meanwhile (`to_its_end`): left half way by a second
    cancellation, the proof stayed taken back and the next start declared `epoch` lost.
    """

    async def again() -> None:
        with suppress(sqlite3.Error):
            if (await chain_state()).epoch != epoch and journal is not None:
                await journal.sealed_nothing_on_thread(epoch)

    await to_its_end(again())


async def reseal_chunk(
    db: aiosqlite.Connection,
    append: Append,
    chain_state: Callable[[], Awaitable[ChainState]],
    key: SigningKey,
    known: Collection[str],
    *,
    now: float,
    clock_synced: bool,
) -> tuple[int, SealedBlock | None]:
    """Seal some undelivered blocks of older epochs again under the current one.

    One transaction: the blocks moved (0 when none is left) and the last block sealed. `key`
    (the gateway's) is a witness of each block's payload (`as_sealed`). A row whose payload
    names the current epoch (its epoch column changed on disk) gets its epoch and seq back.
    A row whose payload nothing vouches for is declared lost in the epoch its row names when
    that is one of the `known` epochs (the epoch journal's), else with no seqs
    (`declare_unplaced`).
    """
    rebuilt = False
    while True:
        try:
            async with async_write_transaction(db):
                epoch = (await chain_state()).epoch
                async with db.execute(
                    f"SELECT rowid, CAST(epoch AS BLOB), seq, {PAYLOAD}, readings, thinned,"
                    f" {WITNESS_COLUMNS} FROM blocks WHERE delivered_at IS NULL"
                    " AND epoch != ? ORDER BY rowid LIMIT ?",
                    (epoch, _RESEAL_BLOCKS),
                ) as cursor:
                    rows = list(await cursor.fetchall())
                # Runs of consecutive blocks alike in `thinned`, in order: a block's readings
                # thinned to make room stay so (dropped next, not thinned again), and a full
                # block's are not taken for thinned (dropped before they were ever thinned).
                runs: list[tuple[bool, list[Record]]] = []
                restored: list[tuple[str, int, int]] = []
                moving: list[tuple[str, int]] = []  # their keys, before and after
                last: SealedBlock | None = None
                for rowid, held_epoch, seq, held, readings, thinned, *witnessed in rows:
                    payload = bytes(held)
                    named = bytes(held_epoch).decode(errors="replace")
                    if as_sealed(payload, *witnesses(witnessed), key):
                        block = decode_block(payload)
                        if block.header.epoch == epoch:
                            # This epoch's block, its epoch column changed on disk: its
                            # payload, vouched for, names its place; it goes back there.
                            restored.append((epoch, block.header.seq, int(rowid)))
                            moving += [(named, int(seq)), (epoch, block.header.seq)]
                            continue
                        if not runs or runs[-1][0] != bool(thinned):
                            runs.append((bool(thinned), []))
                        runs[-1][1].extend(block.records)
                    else:  # changed on disk: cannot be decoded, declared lost in its own epoch
                        damaged = (named, int(seq), sealed_count(readings))
                        sealed = await (
                            declare_damaged(db, append, damaged, now=now, clock_synced=clock_synced)
                            if named in known
                            else declare_unplaced(
                                append, damaged, now=now, clock_synced=clock_synced
                            )
                        )
                        last = sealed or last
                # By rowid: the row as the table holds it, whatever its epoch reads now; a span
                # stored aside under either key goes, to be found again from the payload.
                await forget_spans(db, moving)
                await db.executemany(
                    "UPDATE blocks SET epoch = ?, seq = ? WHERE rowid = ?", restored
                )
                moved = {rowid for _, _, rowid in restored}
                await db.executemany(
                    "DELETE FROM blocks WHERE rowid = ?",
                    [(row[0],) for row in rows if int(row[0]) not in moved],
                )
                # Sealed once their rows are gone: the pages those freed take them (a full
                # outbox need not make room for the chunk beside the blocks it replaces).
                for was_thinned, records in runs:
                    for start in range(0, len(records), _RESEAL_RECORDS):
                        last = await append(
                            tuple(records[start : start + _RESEAL_RECORDS]),
                            now=now,
                            clock_synced=clock_synced,
                            thinned=was_thinned,
                        )
            return len(rows), last
        except sqlite3.DatabaseError as exc:
            if rebuilt or getattr(exc, "sqlite_errorcode", 0) != sqlite3.SQLITE_CORRUPT_INDEX:
                raise
            # A row whose epoch or seq changed on disk is no longer where the table's indexes
            # say (quick_check does not compare them), and SQLite refuses to move or delete
            # it: the indexes are made again from the rows as the table holds them, once.
            await db.execute("REINDEX blocks")
            log.warning("outbox_indexes_rebuilt", error=str(exc))
            rebuilt = True


async def resign_chunk(
    db: aiosqlite.Connection, key: SigningKey, previous: SigningKey, *, after: int
) -> tuple[int, int, int]:
    """Sign again with `key` up to RESIGN_BLOCKS undelivered blocks past rowid `after`.

    The blocks' bytes stay as sealed (the signature is detached): only `alg`, `kid` and
    `sig` change. Only a payload its row still vouches for (`as_sealed`: its digest, or its
    signature by `previous`, the key being replaced) is signed: a signature over bytes that
    changed on disk would vouch for them, and the block would be sent altered. One that is not
    is left as it is, for the send path to declare lost. Returns (blocks read, blocks signed,
    the last one's rowid): fewer than RESIGN_BLOCKS read means none is left.
    """
    async with async_write_transaction(db):
        async with db.execute(
            f"SELECT rowid, epoch, seq, {PAYLOAD}, {WITNESS_COLUMNS} FROM blocks"
            " WHERE delivered_at IS NULL AND kid != ? AND rowid > ? ORDER BY rowid LIMIT ?",
            (key.kid, after, RESIGN_BLOCKS),
        ) as cursor:
            rows = list(await cursor.fetchall())
        updates = []
        for _, epoch, seq, payload, *witnessed in rows:
            if not as_sealed(bytes(payload), *witnesses(witnessed), previous):
                continue
            signature = key.sign(bytes(payload))
            updates.append((signature.alg, signature.kid, signature.sig, epoch, seq))
        await db.executemany(
            "UPDATE blocks SET alg = ?, kid = ?, sig = ? WHERE epoch = ? AND seq = ?",
            updates,
        )
    return len(rows), len(updates), int(rows[-1][0]) if rows else after


async def resign_undelivered(
    db: aiosqlite.Connection,
    key: SigningKey,
    previous: SigningKey,
    lock: AbstractAsyncContextManager[Any],
) -> int:
    """Sign every undelivered block again with `key` (`resign_chunk`), a chunk a transaction.

    `lock` is taken for each chunk: seals go on between them. Returns the blocks signed again.
    """
    signed = after = 0
    while True:
        async with lock:
            rows, resigned, after = await resign_chunk(db, key, previous, after=after)
        signed += resigned
        if rows < RESIGN_BLOCKS:
            return signed
