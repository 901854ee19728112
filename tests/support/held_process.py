"""A second real process held at a chosen moment: `python -c SCRIPT ARGS...` that prints a line
when it has got there, then waits on its stdin for the test to let it go on.

Races between two processes on one file (the agent and `edge-agent backfill`, a writer holding
SQLite's lock) are shown by holding the other process exactly inside the window, no sleeps.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Holds an exclusive flock on the file named by its argument (an outbox's epoch lock: the
# agent's epoch start or `edge-agent backfill` opening the outbox) until released.
HOLD_FLOCK = """
import fcntl, os, sys
descriptor = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(descriptor, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


# Holds the outbox's write lock (an open write transaction, as `edge-agent backfill`, `outbox
# resend` or a second agent's start hold it) until released: every seal meanwhile waits at
# BEGIN IMMEDIATE, and fails with SQLITE_BUSY once the busy timeout is out.
HOLD_WRITE_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
db.execute("UPDATE meta SET value = value WHERE key = 'epoch'")
print("held", flush=True)
sys.stdin.read()
"""


@dataclass(frozen=True)
class Held:
    """The held process, and the line it said when it got there."""

    process: subprocess.Popen[str]
    said: str

    def release(self, line: str | None = None) -> list[str]:
        """Let it go on (send `line`, then end its stdin); what it printed after; exit 0."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None
        assert stdout is not None
        if line is not None:
            stdin.write(line + "\n")
        stdin.close()
        rest = stdout.read().splitlines()
        assert self.process.wait(timeout=60) == 0
        return rest


@contextmanager
def held_process(
    script: str, *args: str, says: str = "held", on_leave: str | None = None
) -> Iterator[Held]:
    """Run `script`; yield once it printed a line starting with `says`.

    Lines before it are passed over (structlog writes a script's log lines to stdout too).
    Leaving the block releases it with `on_leave` unless the test did; a process still running
    after a failure is killed, never left behind.
    """
    with subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdout is not None
        try:
            line = ""
            while not line.startswith(says):
                line = process.stdout.readline()
                assert line, f"the process ended before saying {says!r}"
            held = Held(process, line)
            yield held
            if process.stdin is not None and not process.stdin.closed:
                held.release(on_leave)
        finally:
            if process.poll() is None:
                process.kill()
