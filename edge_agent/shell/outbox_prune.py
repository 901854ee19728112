"""Retention: delivered blocks go, and with them the keys of the readings they imported.

An import remembers the (point, t) of each reading it seals (`backfill_keys`), so that the
same file imported again adds nothing. Those keys are kept as long as the block that carries
the reading: when retention (`outbox.retain_days`) or a full outbox deletes a delivered
block, the keys of its imported readings go in the same transaction. The collector holds
those readings by then, and refuses a second copy of a (gateway, point, t) it holds. A key
whose block is not delivered stays; a reading that moves (sealed again under a new epoch,
kept by thinning) keeps its key, as the block it moves to carries it.

Each step is one transaction on the outbox's connection thread, of a bounded size: a prune
of millions of keys neither holds them in memory nor writes them in one transaction. The same
transaction keeps, per epoch, the highest seq it deleted (table `pruned`): a seq a collector
later lists missing at or below it was delivered and ACKed, then lost by the collector
(`edge_agent.core.missing_blocks`), not lost by the outbox.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

import aiosqlite

from edge_agent.core.thinning import imported_keys
from edge_agent.shell.outbox_schema import PRUNED, raise_seq_mark
from edge_agent.shell.outbox_transaction import on_thread, write_transaction
from specs.block import BlockFormatError, block_hash, decode_block

PRUNE_BLOCKS: Final = 256
"""Delivered blocks deleted per transaction at most."""
PRUNE_KEYS: Final = 16_000
"""Keys deleted per transaction: a chunk stops at the block that reaches this many."""


def _vouched_keys(db: sqlite3.Connection, rowid: int) -> list[tuple[str, str]] | None:
    """The keys of block `rowid`'s imported readings; None when its payload cannot vouch.

    A payload that no longer hashes to its digest (read as bytes, so one changed on disk
    cannot fail the read) or does not decode is not read.
    """
    found, digest = db.execute(
        "SELECT payload, CAST(digest AS BLOB) FROM blocks WHERE rowid = ?", (rowid,)
    ).fetchone()
    payload = bytes(found)
    if block_hash(payload).encode() != bytes(digest):
        return None
    try:
        return imported_keys(decode_block(payload).records)
    except BlockFormatError:
        return None


def _forget_keys(db: sqlite3.Connection, rowid: int) -> int:
    """Delete the keys of the imported readings of block `rowid`; how many it carries.

    A block whose payload cannot vouch for them (`_vouched_keys`) leaves them to the sweep.
    """
    keys = _vouched_keys(db, rowid) or []
    db.executemany("DELETE FROM backfill_keys WHERE point = ? AND t = ?", keys)
    return len(keys)


def prune_chunk(db: sqlite3.Connection, before: float, keep: Sequence[tuple[str, int]] = ()) -> int:
    """One transaction: delete some blocks delivered before `before`, with their keys.

    Oldest first, up to PRUNE_BLOCKS blocks or PRUNE_KEYS keys; returns the blocks deleted
    (0: none left). Blocks that carry no imported reading are not read. The blocks `keep`
    (epoch, seq) stay: a collector has just listed them missing (`outbox_missing`).
    """
    marks = ",".join(["(?, ?)"] * len(keep))
    kept = f" AND (epoch, seq) NOT IN (VALUES {marks})" if keep else ""
    with write_transaction(db):
        rows = db.execute(
            "SELECT rowid, backfilled, epoch, seq FROM blocks"
            " WHERE delivered_at IS NOT NULL AND delivered_at < ?"
            f"{kept} ORDER BY rowid LIMIT ?",
            (before, *(value for block in keep for value in block), PRUNE_BLOCKS),
        ).fetchall()
        gone: list[tuple[int]] = []
        through: dict[str, int] = {}
        keys = 0
        for rowid, backfilled, epoch, seq in rows:
            if keys >= PRUNE_KEYS:
                break
            if backfilled is None or backfilled > 0:  # NULL: sealed before the count
                keys += _forget_keys(db, int(rowid))
            gone.append((int(rowid),))
            through[str(epoch)] = max(through.get(str(epoch), 0), int(seq))
        db.executemany("DELETE FROM blocks WHERE rowid = ?", gone)
        for epoch, seq in through.items():  # read by `outbox_missing`
            raise_seq_mark(db, PRUNED, epoch, seq)
    return len(gone)


def _carried_keys(db: sqlite3.Connection) -> bool:
    """Fill `temp.carried` with the keys of the imported readings of every block held.

    False when one of those blocks cannot vouch for them (its payload no longer hashing to its
    digest, or unreadable): nothing can be said to be no block's.
    """
    db.execute(
        "CREATE TEMP TABLE IF NOT EXISTS carried (point TEXT, t TEXT, PRIMARY KEY (point, t))"
        " WITHOUT ROWID"
    )
    db.execute("DELETE FROM temp.carried")
    # sweep_chunk calls this only once no block held is without its count (backfilled NULL).
    held = db.execute("SELECT rowid FROM blocks WHERE backfilled > 0").fetchall()
    for (rowid,) in held:
        keys = _vouched_keys(db, int(rowid))
        if keys is None:
            return False
        db.executemany("INSERT OR IGNORE INTO temp.carried (point, t) VALUES (?, ?)", keys)
    return True


def _delete_keys(db: sqlite3.Connection, where: str) -> int:
    """Delete up to PRUNE_KEYS keys `k` matching `where` (empty: any); how many went."""
    return db.execute(
        "DELETE FROM backfill_keys WHERE (point, t) IN"
        f" (SELECT k.point, k.t FROM backfill_keys k{where} LIMIT ?)",
        (PRUNE_KEYS,),
    ).rowcount


def sweep_chunk(db: sqlite3.Connection) -> int:
    """One transaction: delete some keys that no block held carries.

    Every such key belongs to no reading the outbox holds: kept by a version that never
    pruned them, or carried by a block declared damaged. An import seals its keys with its
    blocks, so a chunk that sees a key of it sees its block too. The blocks held are read only
    when the keys outnumber the imported readings they carry (`blocks.backfilled`).
    Returns the keys deleted, at most PRUNE_KEYS (0: none left that no block carries).
    """
    with write_transaction(db):
        (keys,) = db.execute("SELECT count(*) FROM backfill_keys").fetchone()
        (nulls, carried) = db.execute(
            "SELECT count(*) - count(backfilled), coalesce(sum(backfilled), 0) FROM blocks"
            " WHERE backfilled IS NULL OR backfilled > 0"
        ).fetchone()
        if int(keys) <= int(carried) or nulls:
            return 0
        if int(carried) == 0:
            return _delete_keys(db, "")
        if not _carried_keys(db):
            return 0
        try:
            return _delete_keys(
                db,
                " WHERE NOT EXISTS (SELECT 1 FROM temp.carried c"
                " WHERE c.point = k.point AND c.t = k.t)",
            )
        finally:
            db.execute("DELETE FROM temp.carried")


async def prune_delivered(
    db: aiosqlite.Connection,
    before: float,
    lock: AbstractAsyncContextManager[Any],
    keep: Sequence[tuple[str, int]] = (),
) -> int:
    """Delete the blocks delivered before `before` and their keys; return how many blocks.

    Not the blocks `keep` (`prune_chunk`). Then the keys no block needs (`sweep_chunk`).
    A chunk a transaction, `lock` held for each.
    """
    pruned = 0
    while True:
        async with lock:
            blocks = await on_thread(db, prune_chunk, before, keep)
        if blocks == 0:
            break
        pruned += blocks
    while True:
        async with lock:
            if await on_thread(db, sweep_chunk) == 0:
                return pruned
