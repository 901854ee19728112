"""A SQLite file (an outbox, a collector's store) lost or put back from a copy, with its log.

In WAL mode a file's latest commits may live in its `-wal` (indexed by its `-shm`) beside it:
a file put back from a copy must not meet the log of the file it replaces, and a lost file
leaves no log behind either.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Final

LOG_SUFFIXES: Final = ("-wal", "-shm")


def remove_log(path: Path) -> None:
    """Remove the `-wal` and `-shm` beside `path`, where there are any."""
    for suffix in LOG_SUFFIXES:
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def remove_with_log(path: Path) -> None:
    """The file at `path` gone, with its `-wal` and `-shm`, as when its disk is lost."""
    path.unlink(missing_ok=True)
    remove_log(path)


def online_copy(path: Path, target: Path) -> None:
    """A consistent copy of the live file at `path` into `target`, as a backup tool takes it
    (SQLite's online backup)."""
    with (
        closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as source,
        closing(sqlite3.connect(target)) as copy,
    ):
        source.backup(copy)


def put_back(path: Path, copy: Path) -> None:
    """The file alone put back from `copy` (its mark and epoch journal stay as they are)."""
    remove_log(path)
    path.write_bytes(copy.read_bytes())
