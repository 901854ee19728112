"""The agent's stop signals from `edge-agent run`'s first line to the process's exit.

`edge-agent run` checks the map, execs the runner (same process), whose event loop installs
its handlers and only then starts. A signal's default kills the process, so a SIGTERM between
those steps (systemd stopping a unit that is starting: the check and the runner's imports take
several seconds on a starved CPU) ended the agent with -15, and so did one after the loop had
closed and given the signals back to their defaults, while the interpreter exits.

So the signals are never left to their default once the command runs: while the map is
checked a signal ends the command at once with exit 0 (nothing is polled or open yet); from
just before the exec until the runner's loop handles them they are blocked, a signal that came
meanwhile stays pending (a blocked signal survives exec), and the runner stops without
starting; after the stop they are blocked again until the exit, where a pending one is dropped.

The kernel gives a process's signal to any of its threads that does not block it, and the
default acts for the whole process: so the agent's other threads (the outbox's SQLite worker,
the executor's, the outbox's flock waits) block them from birth, and only the main thread takes
them. The SQLite worker outlives the event loop by a moment, after its close gave the signals
their default back, and a flock wait given up may wait on in `flock` until the exit. The
masks themselves are the host layer's (`hostkit.signal_mask`), which the collector uses too.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Final

from hostkit.signal_mask import block_signals

STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""What stops the agent (SIGHUP: a run by hand whose terminal goes away)."""


def hold_stop_signals() -> None:
    """Block the stop signals in this thread (and the threads and exec'd image it makes)."""
    block_signals(STOP_SIGNALS)


def release_stop_signals() -> None:
    """Unblock them: a pending one is delivered now, to whatever handles it."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def stop_signal_held() -> bool:
    """Whether a stop signal came while they were blocked (it is still pending)."""
    return not signal.sigpending().isdisjoint(STOP_SIGNALS)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:  # noqa: ARG001 - signal API
    sys.exit(0)


def exit_on_stop_signals() -> None:
    """While nothing is polled or open yet: a stop signal ends the process at once, exit 0.

    Released here too: a signal held across a restart's exec (`edge_agent.runner`) ends it now.
    """
    for sig in STOP_SIGNALS:
        signal.signal(sig, _exit_cleanly)
    release_stop_signals()
