"""A SQLite file (an outbox, a collector's store) lost or put back from a copy, with its log.

In WAL mode a file's latest commits may live in its `-wal` (indexed by its `-shm`) beside it:
a file put back from a copy must not meet the log of the file it replaces, and a lost file
leaves no log behind either.
"""

from __future__ import annotations

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
