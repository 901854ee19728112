"""Which SQLite errors say the outbox file itself is damaged (it is moved aside, a new epoch
starts) and which say nothing of it (the agent exits 1 and starts on it again once mended).

A read the disk itself fails (a bad sector, erased flash: SQLITE_IOERR_READ) is the file's
own: it fails the same way at every start, so leaving the file would keep the agent in a
restart loop, polling nothing, for ever. Root reads through any mode bit and this machine has
no device mapper to fail a read, so the verdict is checked on SQLite's own error codes.
"""

from __future__ import annotations

import sqlite3

import pytest

from edge_agent.shell.outbox_recovery import file_is_damaged


def _error(name: str) -> sqlite3.DatabaseError:
    """The error SQLite raises with the result code of the sqlite3 constant `name`."""
    error = sqlite3.OperationalError(name)
    error.sqlite_errorcode = getattr(sqlite3, name)
    error.sqlite_errorname = name
    return error


@pytest.mark.parametrize(
    "name",
    [
        "SQLITE_CORRUPT",
        "SQLITE_NOTADB",
        "SQLITE_IOERR_READ",
        "SQLITE_IOERR_SHORT_READ",
        "SQLITE_IOERR_CORRUPTFS",
    ],
)
def test_a_damaged_file_or_a_failed_read_of_it_is_the_files_own(name: str) -> None:
    assert file_is_damaged(_error(name))


@pytest.mark.parametrize(
    "name",
    [
        "SQLITE_BUSY",
        "SQLITE_LOCKED",
        "SQLITE_CANTOPEN",
        "SQLITE_IOERR",
        "SQLITE_IOERR_SHMOPEN",
        "SQLITE_IOERR_WRITE",
        "SQLITE_FULL",
    ],
)
def test_a_lock_a_file_that_cannot_open_or_a_failed_write_says_nothing_of_it(
    name: str,
) -> None:
    assert not file_is_damaged(_error(name))
