"""How a program's stop signals are checked: which threads take them, and a storm of them.

Which threads take a signal is read from SigBlk of every /proc/PID/task. The kernel gives a
process-directed signal to any of its threads that does not block it, and a signal's default
acts for the whole process. A program that takes its stop signals in its event loop (the main
thread) must keep every other thread from taking them: one that did after the loop had closed
(and given the signals their default back) killed a finished stop with -15.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path


def blocked_signals(status: str) -> int:
    """The SigBlk mask of one thread's /proc status."""
    line = next(line for line in status.splitlines() if line.startswith("SigBlk:"))
    return int(line.split()[1], 16)


def signal_mask(signals: Iterable[signal.Signals]) -> int:
    """`signals` as a /proc mask (bit n-1 for signal n)."""
    return sum(1 << (sig - 1) for sig in signals)


def other_threads(pid: int) -> list[Path]:
    """The /proc task folders of process `pid`'s threads, its main thread left out."""
    return [task for task in Path(f"/proc/{pid}/task").iterdir() if task.name != str(pid)]


def threads_taking(pid: int, signals: Iterable[signal.Signals]) -> list[str]:
    """The names of `pid`'s threads besides the main one that do not block every one of
    `signals` (a thread that ended meanwhile is left out)."""
    wanted = signal_mask(signals)
    taking = []
    for task in other_threads(pid):
        try:
            blocked = blocked_signals((task / "status").read_text(encoding="ascii"))
            name = (task / "comm").read_text(encoding="ascii").strip()
        except FileNotFoundError:  # the thread ended between the listing and the read
            continue
        if blocked & wanted != wanted:
            taking.append(name)
    return taking


def main_thread_blocked(pid: int) -> int:
    """The signals process `pid`'s main thread blocks, as a mask."""
    return blocked_signals(Path(f"/proc/{pid}/status").read_text(encoding="ascii"))


def signalled_until_it_exits(
    process: subprocess.Popen[bytes], sig: signal.Signals, *, every: float = 0.005
) -> tuple[int, float]:
    """Send `sig` to `process` every `every` s until it exited (60 s at the most): a second
    signal during its stop, and one while its interpreter exits. (signals sent, seconds)."""
    started = time.monotonic()
    signals = 0
    while process.poll() is None and time.monotonic() - started < 60:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, sig)
            signals += 1
        time.sleep(every)
    return signals, time.monotonic() - started
