"""Files written whole or not at all: aside, synced, then moved into place.

A file written in place is truncated and filled again: a reader, a crash or a full disk in
between meets half of it, and every other name of the same inode (a hard link kept as a
backup) changes with it. Written to a fresh file beside it, synced and renamed over it, the
path holds the old content or the new, never a part, and the rename itself is synced.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["replace_file", "replacing", "sync_directory", "write_aside"]

_RANDOM_BYTES = 6


@contextlib.contextmanager
def _written_aside(path: Path, mode: int) -> Iterator[tuple[Path, BinaryIO]]:
    """A fresh temporary file beside `path` and its handle, synced when the block ends.

    An exception in the block (Ctrl-C or a SystemExit too) removes the file: a stray copy of
    a private key must not stay behind.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(_RANDOM_BYTES)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield temporary, handle
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_aside(path: Path, data: bytes, mode: int = 0o666) -> Path:
    """Write `data` to a fresh temporary file beside `path` (created with `mode`), synced.

    The temporary name is new each time (`.<name>.<random>.tmp`, opened with O_EXCL), so
    nothing already there, a link planted in its place included, is ever written through; it
    is removed again when writing fails. As with open(), the umask narrows `mode`.
    """
    with _written_aside(path, mode) as (temporary, handle):
        handle.write(data)
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
    with _written_aside(path, mode) as (temporary, handle):
        yield handle
    try:
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)


def _remove_leftovers(path: Path) -> None:
    """Remove the temporaries a crash left of `path`'s earlier writes (each has a new name).

    The callers of `replacing` are meant to be their files' only writers, so before one
    writes, any `.<name>.<random>.tmp` beside it is an abandoned write. (Two writers at once
    of one path: the second to start removes the first one's file, whose rename then fails,
    loudly; neither's content is mixed into the other's.)
    """
    leftover = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{{2 * _RANDOM_BYTES}}}\.tmp")
    for sibling in path.parent.iterdir():
        if leftover.fullmatch(sibling.name):
            sibling.unlink(missing_ok=True)
