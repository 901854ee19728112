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

A disk too full for the whole reserve when the outbox opens gets a smaller one (halved down to
`RESERVE_MIN`), and the WAL's share shrinks with it (`claim_reserve`): a WAL is never let grow
past what the reserve it has can checkpoint, or its pages beyond the end of the file would
stay there for good once the disk is full (no ACK recorded, no seal). With not even
`RESERVE_MIN` free, the WAL is bounded as for that one, and the reserve is claimed once there
is room.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

_WAL_SHARE: Final = 8  # an eighth of the budget for the WAL ...
_WAL_CAP: Final = 4 * 1024 * 1024  # ... but never more than this (SQLite's own default)
# Evict at least this share of the budget each time room is made, so a full outbox does not
# make room for every single block.
EVICT_SHARE: Final = 20
EVICT_MIN: Final = 64 * 1024
_RESERVE_MARGIN: Final = 1024 * 1024
# The smallest reserve tried when the whole one does not fit: its WAL checkpoints every 64 KiB.
RESERVE_MIN: Final = 256 * 1024
# Never seal one replacement bigger than this: memory stays bounded whatever the budget.
EVICT_MAX: Final = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SpaceBudget:
    """How many bytes the outbox may use, split between the database file and its WAL."""

    max_bytes: int
    page_size: int = 4096
    reserve_room: int | None = None
    """The reserve a nearly full disk left room for, when smaller than `reserve_bytes` asks:
    the WAL's share is then half of it (`claim_reserve`)."""

    @property
    def wal_bytes(self) -> int:
        """The WAL's share (the limit it is truncated to after a checkpoint)."""
        share = min(self.max_bytes // _WAL_SHARE, _WAL_CAP)
        if self.reserve_room is not None:
            return min(share, self.reserve_room // 2)
        return share

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
        and some room to spare for the transactions that then make room. Or the smaller one a
        nearly full disk left room for (`reserve_room`).
        """
        if self.reserve_room is not None:
            return self.reserve_room
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
        self.refused: str | None = None
        """Why the last `claim` failed, as the OS said it (None: it has not failed)."""

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
        return self.on_disk >= self._size

    @property
    def on_disk(self) -> int:
        """The size of the reserve file there now (a smaller one, or none: 0)."""
        try:
            return self._path.stat().st_size
        except FileNotFoundError:
            return 0

    def claim(self) -> bool:
        """Allocate the reserve if it is not in place; False when the disk has no room.

        A smaller reserve already there (claimed on a nearly full disk) is kept as it was.
        """
        had = self.on_disk
        if had >= self._size:
            return True
        try:
            descriptor = os.open(self._path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(descriptor, 0, self._size)
                os.fsync(descriptor)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(descriptor, had)
                raise
            finally:
                os.close(descriptor)
        except OSError as exc:
            if not had:
                with contextlib.suppress(OSError):
                    self._path.unlink()
            self.refused = f"cannot allocate {self._path}: {exc.strerror or exc}"
            return False
        self.refused = None
        return True

    def release(self) -> bool:
        """Give the reserve back to the filesystem; False when there was none."""
        try:
            self._path.unlink()
        except FileNotFoundError:
            return False
        return True


def claim_reserve(outbox: Path, budget: SpaceBudget) -> tuple[SpaceBudget, Reserve, bool]:
    """The reserve of `outbox` claimed, and the budget that fits it; whether one was claimed.

    The whole reserve first; on a disk without room for it, half as much again and again down
    to `RESERVE_MIN`, skipping each size over half the free space (the file and its WAL need
    the rest) but `RESERVE_MIN` itself, tried whatever is free; the WAL's share shrinks to
    what the one claimed can checkpoint. None claimed: the WAL is bounded as for the smallest,
    which is claimed once there is room (`RoomMaker.reclaim_reserve`).
    """
    size = budget.reserve_bytes
    reserve = Reserve.beside(outbox, size)
    if reserve.claim():
        return budget, reserve, True
    free = free_bytes(outbox.parent) + reserve.on_disk  # a smaller one kept from the last run
    while size > RESERVE_MIN:
        size = max(RESERVE_MIN, size // 2)
        if size > free // 2 and size > RESERVE_MIN:  # the file and its WAL need the rest
            continue
        smaller = replace(budget, reserve_room=size)
        reserve = Reserve.beside(outbox, smaller.reserve_bytes)
        if reserve.claim():
            return smaller, reserve, True
    return replace(budget, reserve_room=RESERVE_MIN), reserve, False


def reserve_shortfall(outbox: Path, max_bytes: int) -> str | None:
    """What `edge-agent check` warns of: a disk with too little room for the whole reserve.

    None when the reserve is held whole, or the disk has room for it and a WAL beside it.
    """
    wanted = SpaceBudget(max_bytes).reserve_bytes
    reserve = Reserve.beside(outbox, wanted)
    if reserve.held:
        return None
    folder = next(above for above in outbox.parents if above.exists())
    held = reserve.on_disk
    free = free_bytes(folder) + held
    if free >= wanted + _WAL_CAP:
        return None
    kib = 1024
    has = f"holds only {held // kib} KiB" if held else "is not held"
    return (
        f"{folder} has {free // kib} KiB free: the outbox's disk reserve ({wanted // kib} KiB)"
        f" {has}, so its WAL is kept small and a full disk thins the backlog sooner; free space"
        " there (docs/reliability.md, When the disk is full)"
    )
