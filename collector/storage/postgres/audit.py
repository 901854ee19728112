"""The audit chain in PostgreSQL: SQLite's steps (collector.storage.sqlite.audit) under a lock.

Several collectors write one database, so every function that writes the chain first takes
AUDIT_LOCK (a transaction advisory lock, held to COMMIT): the head each one reads is then the
head the last one committed, and seqs are handed out once. An ingest takes it after its
gateways' locks and before the feed lock; admin actions and retention take it alone. Each
function runs inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from collector.audit.chain import (
    MINUTE,
    ActionEntry,
    AuditRow,
    BucketKey,
    ChainHead,
    action_row,
    prune_head,
    rejection_rows,
    seal,
)
from collector.model import AuditEntry
from collector.storage.postgres.connection import Db
from collector.storage.postgres.locks import AUDIT_LOCK
from collector.storage.postgres.rows import numbered
from collector.storage.records import AUDIT_COLUMNS, AUDIT_ID, INSERT_AUDIT, audit_row, audit_values

_PRUNE_PAGE: Final = 1000


async def _first_young(db: Db, chain: ChainHead, before: float) -> int:
    """The seq of the oldest chained row with an occurrence at or after `before`.

    Walks the chain from its base by its index, a page at a time: it reads the rows that go
    and one more, never the whole trail. Past the head when every row is old.
    """
    after = chain.base_seq - 1
    while True:
        found = await db.fetch(
            "SELECT chain_seq, coalesce(last_at, at) FROM audit WHERE chain_seq > $1"
            " ORDER BY chain_seq LIMIT $2",
            after,
            _PRUNE_PAGE,
        )
        for row in found:
            if row[1] >= before:
                return int(row[0])
        if len(found) < _PRUNE_PAGE:
            return chain.head_seq + 1
        after = int(found[-1][0])


async def lock_chain(db: Db) -> None:
    """Wait for every other writer of the chain; held until this transaction ends."""
    await db.execute("SELECT pg_advisory_xact_lock($1)", AUDIT_LOCK)


async def append(
    db: Db,
    rejections: Sequence[AuditEntry] = (),
    actions: Sequence[ActionEntry] = (),
    *,
    now: float,
) -> None:
    """Add rejections to their open rows and actions as rows of their own, then seal."""
    if not rejections and not actions:
        return
    await lock_chain(db)
    if rejections:
        found = await db.fetch(
            "SELECT source, reason, minute FROM audit"
            " WHERE chain_seq IS NULL AND minute IS NOT NULL"
        )
        held: list[BucketKey] = [(r[0], r[1], r[2]) for r in found]
        registered = await db.fetch(
            "SELECT gateway FROM gateways WHERE gateway = ANY($1::text[])",
            sorted({entry.gateway for entry in rejections if entry.gateway}),
        )
        await db.executemany(
            numbered(
                f"{INSERT_AUDIT} ON CONFLICT (source, reason, minute)"
                " WHERE chain_seq IS NULL AND minute IS NOT NULL"
                " DO UPDATE SET count = audit.count + excluded.count,"
                " last_at = greatest(coalesce(audit.last_at, audit.at), excluded.last_at)"
            ),
            [
                audit_values(row)
                for row in rejection_rows(rejections, held, {str(r[0]) for r in registered})
            ],
        )
    if actions:
        await db.executemany(
            numbered(INSERT_AUDIT), [audit_values(action_row(entry)) for entry in actions]
        )
    await _seal_due(db, now)


async def head(db: Db) -> ChainHead | None:
    """The stored chain head; None before the first row is sealed."""
    row = await db.fetchrow(
        "SELECT base_seq, base_prev, head_seq, head_hash FROM audit_chain WHERE id = 1"
    )
    return None if row is None else ChainHead(int(row[0]), row[1], int(row[2]), row[3])


async def _save_head(db: Db, chain: ChainHead) -> None:
    await db.execute(
        "INSERT INTO audit_chain (id, base_seq, base_prev, head_seq, head_hash)"
        " VALUES (1, $1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET"
        " base_seq = excluded.base_seq, base_prev = excluded.base_prev,"
        " head_seq = excluded.head_seq, head_hash = excluded.head_hash",
        chain.base_seq,
        chain.base_prev,
        chain.head_seq,
        chain.head_hash,
    )


async def seal_due(db: Db, now: float) -> int:
    """Chain every open row that is due at `now`, in id order; how many were sealed."""
    await lock_chain(db)
    return await _seal_due(db, now)


async def _seal_due(db: Db, now: float) -> int:
    found = await db.fetch(
        f"SELECT {AUDIT_COLUMNS}, id FROM audit WHERE chain_seq IS NULL"
        " AND (minute IS NULL OR minute <= $1) ORDER BY id",
        now - MINUTE,
    )
    if not found:
        return 0
    chain, sealed = seal(await head(db) or ChainHead(), [audit_row(record) for record in found])
    await db.executemany(
        "UPDATE audit SET chain_seq = $1, prev = $2, hash = $3, last_at = $4 WHERE id = $5",
        [
            (row.chain_seq, row.prev, row.hash, row.last_at, record[AUDIT_ID])
            for row, record in zip(sealed, found, strict=True)
        ],
    )
    await _save_head(db, chain)
    return len(found)


async def sealed_rows(db: Db, *, after: int | None, limit: int) -> list[AuditRow]:
    """Up to `limit` sealed rows with chain_seq above `after`, in chain order."""
    found = await db.fetch(
        f"SELECT {AUDIT_COLUMNS} FROM audit WHERE chain_seq > $1 ORDER BY chain_seq LIMIT $2",
        -1 if after is None else after,
        limit,
    )
    return [audit_row(row) for row in found]


async def open_rows(db: Db) -> int:
    """How many rows are not chained yet."""
    return int(await db.fetchval("SELECT count(*) FROM audit WHERE chain_seq IS NULL"))


async def prune(db: Db, before: float) -> int:
    """Delete the oldest sealed rows whose every occurrence is before `before`; how many.

    Only a prefix of the chain goes (up to the first row still young), so the kept rows stay
    one unbroken chain from the head's new base.
    """
    await lock_chain(db)
    chain = await head(db)
    if chain is None:
        return 0
    limit = await _first_young(db, chain, before)
    status = await db.execute("DELETE FROM audit WHERE chain_seq < $1", limit)
    deleted = int(status.rsplit(" ", 1)[1])
    if not deleted:
        return 0
    kept = await db.fetchrow(f"SELECT {AUDIT_COLUMNS} FROM audit WHERE chain_seq = $1", limit)
    await _save_head(db, prune_head(chain, None if kept is None else audit_row(kept)))
    return deleted
