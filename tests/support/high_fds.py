"""File descriptors from 1024 up, as an agent with hundreds of sockets and files open gets them.

`select.select` cannot watch such a descriptor ("filedescriptor out of range in select()");
a serial port the agent opens while its low descriptors are in use must work all the same.
"""

from __future__ import annotations

import contextlib
import os
import resource
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["SELECT_LIMIT", "descriptors_on", "low_fds_taken"]

SELECT_LIMIT = 1024  # FD_SETSIZE: select.select refuses descriptors from here up
# What a block opens above the floor: pyserial opens the port and two pipes (5 descriptors).
_ABOVE_FLOOR = 16


@contextlib.contextmanager
def low_fds_taken(floor: int = SELECT_LIMIT) -> Iterator[None]:
    """While the block runs every descriptor below `floor` is in use: what it opens is above.

    The soft RLIMIT_NOFILE is raised for the block if it is too low to reach `floor`; the
    test is skipped if the hard limit keeps this process below it (an environment's limit).
    """
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = limits
    wanted = floor + _ABOVE_FLOOR
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"hard RLIMIT_NOFILE {hard}: this process cannot open descriptor {floor}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    taken: list[int] = []
    try:
        # Each open takes the lowest free descriptor: once one is >= floor, all below are taken.
        while (fd := os.open(os.devnull, os.O_RDONLY)) < floor:
            taken.append(fd)
        os.close(fd)
        yield
    finally:
        for fd in taken:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def descriptors_on(path: str) -> set[int]:
    """The descriptors this process has open on `path` (a tty's /dev/pts/N)."""
    fds = Path("/proc/self/fd")
    found: set[int] = set()
    for link in fds.iterdir():
        with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor, gone
            if str(link.readlink()) == path:
                found.add(int(link.name))
    return found
