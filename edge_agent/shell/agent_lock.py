"""One agent per outbox: the running agent holds `<outbox>.agent-lock`.

Two agents on one outbox (one started by hand while the service runs) would each poll every
device and seal every reading into the same file, and under the one MQTT client id throw each
other off the broker. The lock is an flock on a file beside the outbox: the kernel lets it go
when its holder ends, however it ends, so a killed agent never leaves a stale lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class AgentRunningError(Exception):
    """Another agent holds the outbox's agent lock."""


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
    with os.fdopen(os.open(lock_path, os.O_RDONLY | os.O_CREAT, 0o644), "rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AgentRunningError(another_agent_message(outbox_path)) from None
        yield


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
        handle = agent_lock_path(outbox_path).open("rb")
    except OSError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False
