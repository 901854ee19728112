"""One agent per outbox: the running agent holds `<outbox>.agent-lock`.

Two agents on one outbox (one started by hand while the service runs) would each poll every
device and seal every reading into the same file, and under the one MQTT client id throw each
other off the broker. The lock is an flock on a file beside the outbox: the kernel lets it go
when its holder ends, however it ends, so a killed agent never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from configkit.issues import not_a_regular_file


class AgentLockError(Exception):
    """The outbox's agent lock cannot be taken."""


class AgentRunningError(AgentLockError):
    """Another agent holds the outbox's agent lock."""


class AgentLockNotAFileError(AgentLockError):
    """Something else than a file is at the lock's path (a FIFO, a device, a socket)."""


def agent_lock_path(outbox_path: Path) -> Path:
    """Where the running agent's lock lives: `<outbox>.agent-lock`."""
    return outbox_path.with_name(outbox_path.name + ".agent-lock")


@contextmanager
def sole_agent(outbox_path: Path) -> Iterator[None]:
    """Hold the outbox's agent lock; AgentRunningError when another agent holds it.

    The file's descriptor is not inherited across an exec (Python's default), so a restart
    on a pushed map takes the lock again once this one has let it go.
    """
    lock_path = agent_lock_path(outbox_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    # Read-only: an flock needs no write access, and a lock file left by an agent run once by
    # hand as root (0644) stays usable by the service's user.
    with os.fdopen(_open_lock(lock_path, os.O_CREAT), "rb") as handle:
        instead = _not_a_file(handle.fileno())
        if instead is not None:
            raise AgentLockNotAFileError(lock_not_a_file_message(lock_path, instead))
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AgentRunningError(another_agent_message(outbox_path)) from None
        yield


def _open_lock(lock_path: Path, flags: int = 0) -> int:
    """The lock file opened to read, never waiting (the kind is then asked of the descriptor).

    O_NONBLOCK: a FIFO at the lock's path would otherwise wait for a writer for ever.
    """
    return os.open(lock_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | flags, 0o644)


def _not_a_file(descriptor: int) -> str | None:
    """What the opened lock is instead of a regular file (a FIFO, a device, ...), or None."""
    mode = os.fstat(descriptor).st_mode
    if stat.S_ISREG(mode):
        return None
    return not_a_regular_file(mode) or "not a regular file"


def lock_not_a_file_message(lock_path: Path, instead: str) -> str:
    """What the agent says of a lock path that is no file."""
    return f"{lock_path}: not a file but {instead}; remove it (the agent's lock file goes there)"


def another_agent_message(outbox_path: Path) -> str:
    """What a second agent on the outbox is told."""
    return f"{outbox_path}: another edge-agent runs on this outbox; stop it first"


def another_agent_runs(outbox_path: Path) -> bool:
    """Whether an agent holds the outbox's lock now; creates nothing, takes nothing for good.

    For `run`'s checks before the runner takes the lock, and `status` telling 4 from 3: no
    lock file, or one that cannot be opened, is False here, and `sole_agent` decides (and
    says why) when the runner starts.
    """
    try:
        handle = os.fdopen(_open_lock(agent_lock_path(outbox_path)), "rb")
    except OSError:
        return False
    with handle:
        if _not_a_file(handle.fileno()) is not None:  # no agent locks that: `run` names it
            return False
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False
