"""Only the main thread takes the stop signals: every other thread is born blocking them.

Both programs take their stop signals in the event loop (`loop.add_signal_handler`, which only
the main thread runs). The kernel gives a process-directed signal to any of its threads that
does not block it, and a signal's default acts for the whole process: once the loop has closed
(or removed its handlers) and given the signals their default back, a signal taken by a thread
still alive killed a finished clean stop with -15. aiosqlite's worker thread outlives its
connection's close by a moment (nothing joins it), the default executor's until the loop's
shutdown joins them. A new thread takes its creator's mask, so such threads are started under
`signals_blocked` or block them in their executor's initializer (`executor_leaving_signals`).
"""

from __future__ import annotations

import signal
from collections.abc import Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Final

MAIN_THREAD_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
"""What a thread besides the main one blocks: the agent's stop signals, and the collector's
(SIGTERM, SIGINT; a SIGHUP's default ends it whichever thread takes it)."""


def block_signals(signals: Collection[signal.Signals]) -> None:
    """Block `signals` in this thread (and the threads it starts from now on)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)


@contextmanager
def signals_blocked(signals: Collection[signal.Signals]) -> Iterator[None]:
    """Blocked in this thread within the block, then as they were before it.

    A thread started meanwhile is born blocking them; one that came meanwhile stays pending
    and is taken at the block's end.
    """
    before = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def executor_leaving_signals(thread_name_prefix: str) -> ThreadPoolExecutor:
    """An executor whose threads block `MAIN_THREAD_SIGNALS` from their start.

    For the event loop's default executor (name resolution, `asyncio.to_thread`).
    """
    return ThreadPoolExecutor(
        thread_name_prefix=thread_name_prefix,
        initializer=block_signals,
        initargs=(MAIN_THREAD_SIGNALS,),
    )
