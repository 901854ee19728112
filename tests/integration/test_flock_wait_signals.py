"""The flock wait's thread blocks the stop signals from birth, as the agent's other threads do.

A wait given up (its bound, or a stop: `cut_short`) leaves its thread blocked in `flock` until
the other process lets the lock go, past the event loop's close. The loop's handlers are gone
by then and the signals back at their default; the main thread blocks them (runner's finally,
`hold_stop_signals`), so a second SIGTERM/SIGHUP while the process exits must stay pending,
not be taken by that thread and kill the agent with -15 (edge_agent.shell.stop_signals).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.held_process import HOLD_FLOCK, ROOT, held_process

pytestmark = pytest.mark.timeout(60)

# A stop ends the wait on a held lock; the loop closes; the main thread holds the stop
# signals, as runner does; a second signal comes while the process exits.
WAIT_CUT_SHORT_THEN_SIGNALLED = """
import asyncio, os, signal, sys, threading
from edge_agent.shell.flock_wait import taken_within
from edge_agent.shell.stop_signals import STOP_SIGNALS, hold_stop_signals

async def main() -> None:
    stop = asyncio.Event()
    descriptor = os.open(sys.argv[1], os.O_RDWR)
    waiting = asyncio.create_task(taken_within(descriptor, None, cut_short=stop))
    await asyncio.sleep(0)  # its thread started
    stop.set()
    assert await waiting is False

asyncio.run(main())
hold_stop_signals()
print("waiting:", [t.name for t in threading.enumerate() if t.name == "outbox-flock-wait"])
for sig in (signal.SIGHUP, signal.SIGTERM):
    os.kill(os.getpid(), sig)  # a fatal default taken by an unblocking thread kills us here
print("pending:", sorted(s.name for s in signal.sigpending() if s in STOP_SIGNALS), flush=True)
"""


def test_a_second_stop_signal_after_a_cut_short_wait_is_a_clean_exit(tmp_path: Path) -> None:
    """Before: the process died of the SIGHUP (-1), its wait's thread taking it."""
    lock = tmp_path / "outbox.db.seq"
    with held_process(HOLD_FLOCK, str(lock)):
        done = subprocess.run(
            [sys.executable, "-c", WAIT_CUT_SHORT_THEN_SIGNALLED, str(lock)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == [
        "waiting: ['outbox-flock-wait']",
        "pending: ['SIGHUP', 'SIGTERM']",
    ]
