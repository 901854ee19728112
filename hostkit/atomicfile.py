"""Files written whole or not at all: aside, synced, then moved into place.

A file written in place is truncated and filled again: a reader, a crash or a full disk in
between meets half of it, and every other name of the same inode (a hard link kept as a
backup) changes with it. Written to a fresh file beside it, synced and renamed over it, the
path holds the old content or the new, never a part, and the rename itself is synced.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["replace_file", "replacing", "sync_directory", "write_aside"]

_RANDOM_BYTES = 6


@contextlib.contextmanager
def _aside(path: Path, mode: int) -> Iterator[tuple[Path, BinaryIO]]:
    """A fresh temporary file beside `path` and its handle, locked while the block runs.

    The lock (flock) tells another writer of `path` that this file is a write in progress,
    not what a crash left (`_remove_leftovers`). An exception in the block (Ctrl-C or a
    SystemExit too) removes the file: a stray copy of a private key must not stay behind.
    """
    temporary, fd = _created_locked(path, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield temporary, handle
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _created_locked(path: Path, mode: int) -> tuple[Path, int]:
    """A new temporary file beside `path`, created and locked: its path and descriptor.

    Another writer's `_remove_leftovers` may lock and remove it between the two; then it is
    linked nowhere, and another is made.
    """
    while True:
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(_RANDOM_BYTES)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_nlink > 0:
                return temporary, fd
        except BaseException:
            os.close(fd)
            temporary.unlink(missing_ok=True)
            raise
        os.close(fd)


def _synced(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def write_aside(path: Path, data: bytes, mode: int = 0o666) -> Path:
    """Write `data` to a fresh temporary file beside `path` (created with `mode`), synced.

    The temporary name is new each time (`.<name>.<random>.tmp`, opened with O_EXCL), so
    nothing already there, a link planted in its place included, is ever written through; it
    is removed again when writing fails. As with open(), the umask narrows `mode`.
    """
    with _aside(path, mode) as (temporary, handle):
        handle.write(data)
        _synced(handle)
    return temporary


def sync_directory(folder: Path) -> None:
    """Make the renames and links done in `folder` durable (fsync of the directory)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_file(path: Path, data: bytes, mode: int = 0o666) -> None:
    """Put `data` at `path` whole: written aside, synced, renamed over it, the rename synced.

    OSError when it cannot; no temporary is left, and `path` still holds what it held unless
    only the final sync of the folder failed (the rename is then done but maybe not durable).
    """
    with replacing(path, mode) as handle:
        handle.write(data)


@contextlib.contextmanager
def replacing(path: Path, mode: int = 0o666) -> Iterator[BinaryIO]:
    """A file to write `path`'s new content into, a piece at a time, put at `path` whole.

    `replace_file` for content too large to hold: what a crash (a kill) left of earlier
    writes of `path` is removed first (it may be large, and nothing else would take it away),
    then the block writes to a fresh temporary file beside `path` (created with `mode`, as
    `write_aside` names it); when the block ends it is synced and renamed over `path`, the
    rename synced. An exception in the block, or an OSError on the way, removes the temporary
    file and leaves `path` as it was.
    """
    _remove_leftovers(path)
    with _aside(path, mode) as (temporary, handle):
        yield handle
        _synced(handle)
        temporary.replace(path)  # still locked: no other writer takes it for a leftover
    sync_directory(path.parent)


def _remove_leftovers(path: Path) -> None:
    """Remove the temporaries a crash left of `path`'s earlier writes (each has a new name).

    A write in progress holds a lock on its temporary until it is renamed into place (two
    exports to one file at once, say), so only a temporary nobody holds is a crash's.
    """
    leftover = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{{2 * _RANDOM_BYTES}}}\.tmp")
    for sibling in path.parent.iterdir():
        if leftover.fullmatch(sibling.name):
            _remove_unless_held(sibling)


def _remove_unless_held(temporary: Path) -> None:
    """Remove `temporary` unless a writer holds its lock."""
    try:
        fd = os.open(temporary, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return  # renamed into place or removed meanwhile
    except OSError:  # a link planted at that name, or a file this user may not read
        temporary.unlink(missing_ok=True)  # no writer's: writers make files of their own
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pass  # a write in progress
    else:
        temporary.unlink(missing_ok=True)
    finally:
        os.close(fd)
