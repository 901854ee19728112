"""The outbox's disk budget: how `outbox.max_bytes` maps onto SQLite, and what a full disk says.

The main database file is capped with `PRAGMA max_page_count`, so SQLite itself refuses to
grow it past the budget (SQLITE_FULL) and the outbox makes room before it tries again. The
write-ahead log gets the rest of the budget: it is checkpointed once it holds half its share
and truncated back to its share after a checkpoint, so file plus WAL stay within max_bytes
unless one transaction alone is bigger than half the WAL's share (one very large block).

A real full filesystem answers with the same SQLITE_FULL (ENOSPC on a write), and the same
steps make room: freed pages are reused in place, and the WAL is restarted to reuse its file.
But on a disk with not one free block even deleting a row fails (the deletion is written to
the WAL first), and a WAL whose pages lie beyond the end of the file can never be
checkpointed. So the outbox keeps a reserve file beside it (`<path>.reserve`). On the first
full disk it is given back, the WAL is checkpointed into the file and truncated, and the
file is capped at the size it has then (`max_page_count`): from there on the disk is met
exactly like the budget, inside the file's own free pages, and every commit is
checkpointed at once so the WAL holds one transaction. Once the disk has room again the
reserve is claimed back and the cap lifted.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Final

_WAL_SHARE: Final = 8  # an eighth of the budget for the WAL ...
_WAL_CAP: Final = 4 * 1024 * 1024  # ... but never more than this (SQLite's own default)
# Evict at least this share of the budget each time room is made, so a full outbox does not
# make room for every single block.
EVICT_SHARE: Final = 20
EVICT_MIN: Final = 64 * 1024
_RESERVE_MARGIN: Final = 1024 * 1024
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
    def reserve_bytes(self) -> int:
        """The size of the reserve file kept for a full disk.

        Enough to checkpoint a WAL at its checkpoint mark (half its share) into the file,
        and some room to spare for the transactions that then make room.
        """
        return self.wal_pages * self.page_size + _RESERVE_MARGIN

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


def free_bytes(directory: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem of `directory`."""
    stat = os.statvfs(directory)
    return stat.f_bavail * stat.f_frsize


class Reserve:
    """A file of preallocated blocks, given back to the filesystem when it is full."""

    def __init__(self, path: Path, size: int) -> None:
        self._path = path
        self._size = size

    @classmethod
    def beside(cls, outbox: Path, size: int) -> Reserve:
        """The reserve of an outbox file."""
        return cls(outbox.with_name(outbox.name + ".reserve"), size)

    @property
    def size(self) -> int:
        """The reserve's size in bytes."""
        return self._size

    @property
    def held(self) -> bool:
        """Whether the reserve is in place."""
        try:
            return self._path.stat().st_size >= self._size
        except FileNotFoundError:
            return False

    def claim(self) -> bool:
        """Allocate the reserve if it is not in place; False when the disk has no room."""
        if self.held:
            return True
        try:
            descriptor = os.open(self._path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(descriptor, 0, self._size)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        except OSError:
            with contextlib.suppress(OSError):
                self._path.unlink()
            return False
        return True

    def release(self) -> bool:
        """Give the reserve back to the filesystem; False when there was none."""
        try:
            self._path.unlink()
        except FileNotFoundError:
            return False
        return True
