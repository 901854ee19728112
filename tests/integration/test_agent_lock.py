"""The outbox's agent lock works on a lock file the agent may read but not write.

An agent started once by hand as root leaves `<outbox>.agent-lock` owned by root (0644); the
service's user may read it but not open it for writing. The lock is an flock, which a
read-only descriptor takes as well: opening the file for appending made every start of the
service fail with a PermissionError traceback, a restart loop every 2 s.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.shell.agent_lock import AgentRunningError, agent_lock_path, sole_agent


@pytest.fixture
def unwritable_lock(tmp_path: Path) -> Iterator[Path]:
    """An outbox whose lock file this process may read but not write.

    As root (CI) the file is made immutable, which refuses writing even to root; as another
    user, read-only permissions do the same.
    """
    outbox = tmp_path / "state" / "outbox.db"
    lock = agent_lock_path(outbox)
    lock.parent.mkdir(parents=True)
    lock.touch()
    as_root = os.geteuid() == 0
    if as_root:
        subprocess.run(["chattr", "+i", str(lock)], check=True)
    else:
        lock.chmod(0o444)
    try:
        with pytest.raises(PermissionError):
            lock.open("a")  # what the agent may not do with it
        yield outbox
    finally:
        if as_root:
            subprocess.run(["chattr", "-i", str(lock)], check=True)


def test_the_lock_is_taken_on_a_file_the_agent_cannot_write(unwritable_lock: Path) -> None:
    with (
        sole_agent(unwritable_lock),
        pytest.raises(AgentRunningError),
        sole_agent(unwritable_lock),
    ):
        pass  # a second agent is still refused
    with sole_agent(unwritable_lock):
        pass  # and the lock was let go
