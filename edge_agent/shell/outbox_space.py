"""The outbox's disk budget: how `outbox.max_bytes` maps onto SQLite, and what a full disk says.

The main database file is capped with `PRAGMA max_page_count`, so SQLite itself refuses to
grow it past the budget (SQLITE_FULL) and the outbox makes room before it tries again. The
write-ahead log gets the rest of the budget: it is checkpointed once it holds half its share
and truncated back to its share after a checkpoint, so file plus WAL stay within max_bytes
unless one transaction alone is bigger than half the WAL's share (one very large block).

A real full filesystem answers with the same SQLITE_FULL (ENOSPC on a write), and the same
steps make room: freed pages are reused in place, and the WAL file keeps the size it had.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Final

_WAL_SHARE: Final = 8  # an eighth of the budget for the WAL ...
_WAL_CAP: Final = 16 * 1024 * 1024  # ... but never more than this
# Evict at least this share of the budget each time room is made, so a full outbox does not
# make room for every single block.
EVICT_SHARE: Final = 20
EVICT_MIN: Final = 64 * 1024
# Never seal one replacement bigger than this: memory stays bounded whatever the budget.
EVICT_MAX: Final = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SpaceBudget:
    """How many bytes the outbox may use, split between the database file and its WAL."""

    max_bytes: int
    page_size: int = 4096

    @property
    def wal_bytes(self) -> int:
        """The WAL's share (the limit it is truncated to after a checkpoint)."""
        return min(self.max_bytes // _WAL_SHARE, _WAL_CAP)

    @property
    def max_pages(self) -> int:
        """The database file's cap, in pages."""
        return max(16, (self.max_bytes - self.wal_bytes) // self.page_size)

    @property
    def wal_pages(self) -> int:
        """Checkpoint the WAL after this many pages: half its share.

        So the transaction that crosses the mark (one block, or one replacement) still fits.
        """
        return max(8, self.wal_bytes // self.page_size // 2)

    @property
    def evict_bytes(self) -> int:
        """How much undelivered payload gives way each time room is made."""
        return min(EVICT_MAX, max(EVICT_MIN, self.max_bytes // EVICT_SHARE))


def is_full(error: sqlite3.Error) -> bool:
    """Whether SQLite reports a full database (the page cap) or a full disk."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None:
        return bool(code & 0xFF == sqlite3.SQLITE_FULL)
    return "database or disk is full" in str(error)
