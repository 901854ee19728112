"""The audit chain's storage steps once for both backends: aggregate, seal, read and prune.

The pure chain is `collector.audit.chain`; these are its statements, with `?` placeholders,
on a backend's `ChainDb` (`collector.storage.sqlite.audit`, `collector.storage.postgres.audit`).
Each runs inside the caller's transaction; the steps that write the chain first take its lock
(`ChainDb.lock`: SQLite's write transaction serializes the writers already, PostgreSQL takes
AUDIT_LOCK), so that the head each reads is the head the last one committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Protocol

from collector.audit.chain import (
    MINUTE,
    ActionEntry,
    AuditRow,
    BucketKey,
    ChainHead,
    UnreadableRow,
    action_row,
    prune_head,
    rejection_rows,
    seal,
)
from collector.model import AuditEntry
from collector.storage.records import (
    AUDIT_COLUMNS,
    AUDIT_HASH,
    AUDIT_ID,
    AUDIT_PREV,
    AUDIT_SEQ,
    INSERT_AUDIT,
    Row,
    audit_row,
    audit_values,
    finite_number,
)

_PRUNE_PAGE: Final = 1000
# SQLite keeps text or a fraction put by hand in the INTEGER chain_seq (and sorts text after
# every number): such a row has no place in the chain, so it is left out of the chain's reads
# (the verifier reports its seq missing) instead of int() failing on it.
_WHOLE_SEQ: Final = "chain_seq = CAST(chain_seq AS BIGINT)"


class ChainDb(Protocol):
    """A backend's connection as the chain's steps use it (statements with `?`)."""

    larger: str
    """The dialect's two-argument max (SQLite `max`, PostgreSQL `greatest`)."""

    async def lock(self) -> None:
        """Wait for every other writer of the chain; held until this transaction ends."""

    async def fetch(self, sql: str, params: Sequence[object], /) -> Sequence[Row]:
        """The rows `sql` gives with `params`."""

    async def execute(self, sql: str, params: Sequence[object], /) -> int:
        """Run `sql` once; how many rows it changed."""

    async def execute_many(self, sql: str, rows: Sequence[Sequence[object]], /) -> None:
        """Run `sql` for each of `rows`."""


async def _first_young(db: ChainDb, chain: ChainHead, before: float) -> int:
    """The seq of the oldest chained row with an occurrence at or after `before`.

    Walks the chain from its base by its index, a page at a time: it reads the rows that go
    and one more, never the whole trail. Past the head when every row is old.
    """
    after = chain.base_seq - 1
    while True:
        found = await db.fetch(
            "SELECT chain_seq, coalesce(last_at, at) FROM audit WHERE chain_seq > ?"
            f" AND {_WHOLE_SEQ} ORDER BY chain_seq LIMIT ?",
            (after, _PRUNE_PAGE),
        )
        for row in found:
            seq = int(row[0])
            try:
                last = finite_number(row[1], "at")
            except ValueError:  # changed by hand: not judged old, kept for verify to report
                return seq
            if last >= before:
                return seq
        if len(found) < _PRUNE_PAGE:
            return chain.head_seq + 1
        after = int(found[-1][0])


async def append(
    db: ChainDb,
    rejections: Sequence[AuditEntry] = (),
    actions: Sequence[ActionEntry] = (),
    *,
    now: float,
) -> None:
    """Add rejections to their open rows and actions as rows of their own, then seal."""
    if not rejections and not actions:
        return
    await db.lock()
    if rejections:
        found = await db.fetch(
            "SELECT source, reason, minute FROM audit"
            " WHERE chain_seq IS NULL AND minute IS NOT NULL",
            (),
        )
        held: list[BucketKey] = [(str(r[0]), str(r[1]), float(r[2])) for r in found]
        sources = sorted({entry.gateway for entry in rejections if entry.gateway})
        registered = (
            await db.fetch(
                f"SELECT gateway FROM gateways WHERE gateway IN ({', '.join('?' * len(sources))})",
                sources,
            )
            if sources
            else []
        )
        await db.execute_many(
            f"{INSERT_AUDIT} ON CONFLICT (source, reason, minute)"
            " WHERE chain_seq IS NULL AND minute IS NOT NULL"
            " DO UPDATE SET count = audit.count + excluded.count,"
            f" last_at = {db.larger}(coalesce(audit.last_at, audit.at), excluded.last_at)",
            [
                audit_values(row)
                for row in rejection_rows(rejections, held, {str(r[0]) for r in registered})
            ],
        )
    if actions:
        await db.execute_many(INSERT_AUDIT, [audit_values(action_row(entry)) for entry in actions])
    await _seal_due(db, now)


async def head(db: ChainDb) -> ChainHead | None:
    """The stored chain head; None before the first row is sealed."""
    found = await db.fetch(
        "SELECT base_seq, base_prev, head_seq, head_hash FROM audit_chain WHERE id = 1", ()
    )
    for row in found:
        return ChainHead(int(row[0]), str(row[1]), int(row[2]), str(row[3]))
    return None


async def _save_head(db: ChainDb, chain: ChainHead) -> None:
    await db.execute(
        "INSERT INTO audit_chain (id, base_seq, base_prev, head_seq, head_hash)"
        " VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET base_seq = excluded.base_seq,"
        " base_prev = excluded.base_prev, head_seq = excluded.head_seq,"
        " head_hash = excluded.head_hash",
        (chain.base_seq, chain.base_prev, chain.head_seq, chain.head_hash),
    )


async def seal_due(db: ChainDb, now: float) -> int:
    """Chain every open row that is due at `now`, in id order; how many were sealed."""
    await db.lock()
    return await _seal_due(db, now)


async def _seal_due(db: ChainDb, now: float) -> int:
    found = await db.fetch(
        f"SELECT {AUDIT_COLUMNS}, id FROM audit WHERE chain_seq IS NULL"
        " AND (minute IS NULL OR minute <= ?) ORDER BY id",
        (now - MINUTE,),
    )
    ids = [int(row[AUDIT_ID]) for row in found]
    if not ids:
        return 0
    chain, sealed = seal(await head(db) or ChainHead(), [audit_row(row) for row in found])
    await db.execute_many(
        "UPDATE audit SET chain_seq = ?, prev = ?, hash = ?, last_at = ? WHERE id = ?",
        [(r.chain_seq, r.prev, r.hash, r.last_at, i) for r, i in zip(sealed, ids, strict=True)],
    )
    await _save_head(db, chain)
    return len(ids)


async def sealed_rows(
    db: ChainDb, *, after: int | None, limit: int
) -> list[AuditRow | UnreadableRow]:
    """Up to `limit` sealed rows with chain_seq above `after`, in chain order.

    A row whose columns no AuditRow can hold (changed by hand) comes as an UnreadableRow, for
    the verifier to report: it must not stop the check that is there to find it.
    """
    found = await db.fetch(
        f"SELECT {AUDIT_COLUMNS} FROM audit WHERE chain_seq > ? AND {_WHOLE_SEQ}"
        " ORDER BY chain_seq LIMIT ?",
        (-1 if after is None else after, limit),
    )
    return [_sealed_row(row) for row in found]


def _sealed_row(row: Row) -> AuditRow | UnreadableRow:
    try:
        return audit_row(row)
    except ValueError as exc:
        hash_ = row[AUDIT_HASH]
        prev = row[AUDIT_PREV]
        return UnreadableRow(
            int(row[AUDIT_SEQ]),
            None if hash_ is None else str(hash_),
            None if prev is None else str(prev),
            str(exc),
        )


async def open_rows(db: ChainDb) -> int:
    """How many rows are not chained yet."""
    found = await db.fetch("SELECT count(*) FROM audit WHERE chain_seq IS NULL", ())
    return int(found[0][0])


async def prune(db: ChainDb, before: float) -> int:
    """Delete the oldest sealed rows whose every occurrence is before `before`; how many.

    Only a prefix of the chain goes (up to the first row still young), so the kept rows stay
    one unbroken chain from the head's new base.
    """
    await db.lock()
    chain = await head(db)
    if chain is None:
        return 0
    limit = await _first_young(db, chain, before)
    deleted = await db.execute("DELETE FROM audit WHERE chain_seq < ?", (limit,))
    if not deleted:
        return 0
    kept = await db.fetch(f"SELECT {AUDIT_COLUMNS} FROM audit WHERE chain_seq = ?", (limit,))
    first = [_sealed_row(row) for row in kept]
    await _save_head(db, prune_head(chain, first[0] if first else None))
    return deleted
