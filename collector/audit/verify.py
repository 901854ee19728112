"""`collector audit verify`: walk the stored chain page by page and check every link.

Collectors may keep appending while this runs: rows sealed meanwhile come after the ones read
(higher seqs), so once the rows run out the head is read again, and the walk goes on until it
has reached the head it read last. Memory stays flat: one page at a time.
"""

from __future__ import annotations

from typing import Final

from collector.audit.chain import ChainReport, ChainVerifier
from collector.storage.capabilities import AuditTrail

PAGE: Final = 1000


async def verify_chain(trail: AuditTrail, *, page: int = PAGE) -> ChainReport:
    """Check every sealed row against its neighbours and the stored head."""
    head, _ = await trail.audit_head()
    verifier = ChainVerifier(head)
    after: int | None = None
    while True:
        rows = await trail.audit_rows(after=after, limit=page)
        verifier.feed(rows)
        if rows:
            after = rows[-1].chain_seq
        if len(rows) < page:
            latest, open_rows = await trail.audit_head()
            if latest is None or after is None or latest.head_seq <= after:
                break
            more = await trail.audit_rows(after=after, limit=1)
            if not more:
                break  # the head is past the rows: rows were deleted (reported by finish)
    verifier.head = latest if latest is not None else head
    return verifier.finish(open_rows)
