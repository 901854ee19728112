"""Stored blocks for re-verification (the BlockArchive capability), once for both backends."""

from __future__ import annotations

from typing import Final

from collector.readmodel import Page, Scope
from collector.storage.queries import Fetch, given, scoped_page
from collector.storage.records import Row, stored_bytes
from collector.verify.core import StoredBlock, StoredBlockAfter
from specs.signing import Signature

# The stored block below each one: seq - 1 when stored (a primary-key lookup), otherwise the
# highest stored seq under it (one more index lookup, only where a hole is); and how far
# retention deleted the epoch's blocks.
_STORED_BLOCKS: Final = """
SELECT b.gateway, b.epoch, b.seq, b.payload, b.alg, b.kid, b.sig, b.hash, b.received_at,
       coalesce(p.seq, (SELECT max(x.seq) FROM blocks x
                        WHERE x.gateway = b.gateway AND x.epoch = b.epoch AND x.seq < b.seq)),
       p.hash, coalesce(s.pruned_through, 0)
FROM blocks b
JOIN gateways g ON g.gateway = b.gateway
LEFT JOIN blocks p ON p.gateway = b.gateway AND p.epoch = b.epoch AND p.seq = b.seq - 1
LEFT JOIN ingest_state s ON s.gateway = b.gateway AND s.epoch = b.epoch
"""


async def stored_blocks(
    fetch: Fetch,
    scope: Scope,
    *,
    gateway: str | None,
    t_from: float | None,
    t_to: float | None,
    after: StoredBlockAfter | None,
    limit: int,
) -> Page[StoredBlock]:
    """Blocks received in [t_from, t_to), ordered by (gateway, epoch, seq), one page."""
    where = given(
        ("b.gateway = ?", gateway),
        ("b.received_at >= ?", t_from),
        ("b.received_at < ?", t_to),
        ("(b.gateway, b.epoch, b.seq) > (?, ?, ?)", after),
    )
    return await scoped_page(
        fetch,
        _STORED_BLOCKS,
        where,
        scope,
        order="b.gateway, b.epoch, b.seq",
        limit=limit,
        decode=_stored_block,
    )


def _stored_block(row: Row) -> StoredBlock:
    return StoredBlock(
        gateway=row[0],
        epoch=row[1],
        seq=row[2],
        payload=stored_bytes(row[3]),
        signature=Signature(row[4], row[5], stored_bytes(row[6])),
        stored_hash=row[7],
        received_at=row[8],
        below_seq=row[9],
        below_hash=row[10],
        pruned_through=row[11],
    )
