"""Files written whole or not at all: aside, synced, then moved into place.

A file written in place is truncated and filled again: a reader, a crash or a full disk in
between meets half of it, and every other name of the same inode (a hard link kept as a
backup) changes with it. Written to a fresh file beside it, synced and renamed over it, the
path holds the old content or the new, never a part, and the rename itself is synced.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

__all__ = ["replace_file", "sync_directory", "write_aside"]

_RANDOM_BYTES = 6


def write_aside(path: Path, data: bytes, mode: int = 0o666) -> Path:
    """Write `data` to a fresh temporary file beside `path` (created with `mode`), synced.

    The temporary name is new each time (`.<name>.<random>.tmp`, opened with O_EXCL), so
    nothing already there, a link planted in its place included, is ever written through.
    As with open(), the umask narrows `mode`.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(_RANDOM_BYTES)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        # Ctrl-C or a SystemExit too: a stray copy of a private key must not stay behind.
        temporary.unlink(missing_ok=True)
        raise
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
    temporary = write_aside(path, data, mode)
    try:
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_directory(path.parent)
    _remove_leftovers(path)


def _remove_leftovers(path: Path) -> None:
    """Remove the temporaries a crash left of `path`'s earlier writes (each has a new name).

    `replace_file`'s callers are the only writers of their files, so once the rename is done
    any other `.<name>.<random>.tmp` beside it is an abandoned write, never one in progress.
    """
    leftover = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{{2 * _RANDOM_BYTES}}}\.tmp")
    for sibling in path.parent.iterdir():
        if leftover.fullmatch(sibling.name):
            sibling.unlink(missing_ok=True)
