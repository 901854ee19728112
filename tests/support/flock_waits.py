"""Who holds or waits for an flock on a file, read from /proc/locks, and a wait until it shows.

The tests of a lock another process holds (tests/support/held_process.py) let it go once this
process is seen waiting on it, not after a sleep.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path


def locks_on(path: Path) -> list[str]:
    """The lines of /proc/locks naming `path` (a waiter's start with `->`)."""
    found = path.stat()
    inode = f"{os.major(found.st_dev):02x}:{os.minor(found.st_dev):02x}:{found.st_ino} "
    with Path("/proc/locks").open(encoding="ascii") as locks:
        return [line for line in locks if inode in line]


def waited_on_here(path: Path) -> bool:
    """Whether a thread of this process waits for an flock on `path`."""
    return any("-> FLOCK" in line and f" {os.getpid()} " in line for line in locks_on(path))


async def until(condition: Callable[[], bool], what: str, within: float = 20.0) -> None:
    """Until `condition` holds, polling the loop's turns; a clear failure after `within` s
    (well before the file's timeout, which would say nothing of what never came)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {within} s"
        await asyncio.sleep(0.001)
