"""An epoch start cancelled while its journal write is on the thread, the write held there.

The ACK handler's epoch start writes the epoch journal on a thread (`EpochJournal.*_on_thread`,
a file synced and renamed: seconds on a slow disk) under the epoch and outbox locks it holds.
The receive task it runs in is cancelled when the connection drops (`first_failure`), and
the collector's next ACK, after the reconnect, proves the rollback again: a second start. Here
the real write (`hostkit.atomicfile.replace_file`) is held on its thread until let go, no
sleeps.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path

import pytest

from edge_agent.shell import outbox_sidecars
from hostkit.atomicfile import replace_file

# The first writes of an epoch start, held by their number: `entry`, the new epoch's, with the
# proof it sealed nothing; `proof_taken_back`, that proof taken back inside its first block's
# transaction, before the commit.
START_WRITES = pytest.mark.parametrize(("held", "what"), [(1, "entry"), (2, "proof_taken_back")])

# Only ends a wait that nothing will end (a write the fix keeps apart never comes): not a timing.
BOUND = 10.0


class HeldWrite:
    """The journal's real write; the `held`-th one (from 1) held, before it starts, until let go.

    Let go by the test, or by another write finished while it waits (the locks kept nothing
    apart): then it lands right after that one, which returns once it has, as a slow fsync
    ending just then would.
    """

    def __init__(self, held: int) -> None:
        self._held = held
        self._writes = 0
        self.waiting = threading.Event()
        self.let_go = threading.Event()
        self.written = threading.Event()

    def replace_file(self, target: Path, data: bytes) -> None:
        """`replace_file` as the journal calls it."""
        self._writes += 1
        if self._writes == self._held:
            self.waiting.set()
            self.let_go.wait(BOUND)
            replace_file(target, data)
            self.written.set()
            return
        replace_file(target, data)
        if self.waiting.is_set() and not self.written.is_set():
            self.let_go.set()
            self.written.wait(BOUND)


async def cancelled_then_again(
    prove_rollback: Callable[[], Coroutine[object, object, None]],
    held: int,
    monkeypatch: pytest.MonkeyPatch,
) -> bool:
    """`prove_rollback()` (an ACK proving a rollback, handled) in a task cancelled (twice) while
    the `held`-th journal write is held, then again once that task is over (the next ACK,
    after the reconnect).

    Returns whether the cancelled task was over at once, its write still held (its locks
    released: nothing kept the second start's journal read and write from coming first). Its
    write is let go once the second start's journal write is made, or once the cancellation
    is delivered if the task is not over then (it waits for its write, its locks held).
    """
    write = HeldWrite(held)
    monkeypatch.setattr(outbox_sidecars, "replace_file", write.replace_file)
    first = asyncio.create_task(prove_rollback())
    assert await asyncio.to_thread(write.waiting.wait, BOUND)
    # Cancelled twice, as a stop cancels again every 0.25 s (`shutdown._stop_tasks`); each
    # wake-up was queued by the cancellation, before this task's: it has run.
    for _ in range(2):
        first.cancel()
        await asyncio.sleep(0)
    over_at_once = first.done()
    if not over_at_once:
        write.let_go.set()
    with pytest.raises(asyncio.CancelledError):
        await first
    await prove_rollback()
    assert write.written.is_set()
    return over_at_once
