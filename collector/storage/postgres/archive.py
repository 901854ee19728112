"""Stored blocks for re-verification (the BlockArchive capability), as SQLite answers them."""

from __future__ import annotations

from typing import Final

from collector.readmodel import Page, Scope
from collector.storage.postgres.connection import Db
from collector.storage.postgres.rows import Params, scope_clause
from collector.verify.core import StoredBlock, StoredBlockAfter
from specs.signing import Signature

# The stored block below each one: seq - 1 when stored (a primary-key lookup), otherwise the
# highest stored seq under it (one more index lookup, only where a hole is). Its hash only for
# seq - 1: a block across a hole has no link to check.
_STORED_BLOCKS: Final = """
SELECT b.gateway, b.epoch, b.seq, b.payload, b.alg, b.kid, b.sig, b.hash, b.received_at,
       coalesce(p.seq, (SELECT max(x.seq) FROM blocks x
                        WHERE x.gateway = b.gateway AND x.epoch = b.epoch AND x.seq < b.seq)),
       p.hash
FROM blocks b
JOIN gateways g ON g.gateway = b.gateway
LEFT JOIN blocks p ON p.gateway = b.gateway AND p.epoch = b.epoch AND p.seq = b.seq - 1
"""


async def stored_blocks(
    db: Db,
    scope: Scope,
    *,
    gateway: str | None,
    t_from: float | None,
    t_to: float | None,
    after: StoredBlockAfter | None,
    limit: int,
) -> Page[StoredBlock]:
    """Blocks received in [t_from, t_to), ordered by (gateway, epoch, seq), one page."""
    params = Params()
    clauses: list[str] = []
    for column, operator, value in (
        ("b.gateway", "=", gateway),
        ("b.received_at", ">=", t_from),
        ("b.received_at", "<", t_to),
    ):
        if value is not None:
            clauses.append(f"{column} {operator} {params.add(value)}")
    if after is not None:
        marks = ", ".join(params.add(part) for part in after)
        clauses.append(f"(b.gateway, b.epoch, b.seq) > ({marks})")
    scope_sql = scope_clause(scope, "g.district", params)
    found = await db.fetch(
        f"{_STORED_BLOCKS} WHERE {' AND '.join(clauses) or 'true'}{scope_sql}"
        f" ORDER BY b.gateway, b.epoch, b.seq LIMIT {params.add(limit + 1)}",
        *params.values,
    )
    return Page.of(
        [
            StoredBlock(
                gateway=row[0],
                epoch=row[1],
                seq=row[2],
                payload=bytes(row[3]),
                signature=Signature(row[4], row[5], bytes(row[6])),
                stored_hash=row[7],
                received_at=row[8],
                below_seq=row[9],
                below_hash=row[10],
            )
            for row in found
        ],
        limit,
    )
