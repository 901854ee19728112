"""An `flock` another process may hold, taken without stopping the event loop.

The agent shares the small lock files beside its outbox with `edge-agent backfill`, a second
process (the epoch lock, the seq mark). A blocking `flock` on the loop stops the whole agent
(instrument polling, MQTT keepalive, ACKs) for as long as the other process holds the lock,
and one stopped with Ctrl-Z inside its hold holds it for good. So the lock is tried at once,
and only when it is held is it waited for, on a thread of its own, for a bounded time.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import threading

from edge_agent.shell.stop_signals import STOP_SIGNALS
from hostkit.signal_mask import signals_blocked


def taken_now(descriptor: int, operation: int = fcntl.LOCK_EX) -> bool:
    """The flock (`operation`) on `descriptor` taken if no one holds it; False if someone does.

    Any other failure closes the descriptor and is raised.
    """
    try:
        fcntl.flock(descriptor, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except BaseException:
        os.close(descriptor)
        raise
    return True


async def taken_within(
    descriptor: int,
    bound: float | None,
    operation: int = fcntl.LOCK_EX,
    *,
    dropped: threading.Event | None = None,
    cut_short: asyncio.Event | None = None,
) -> bool:
    """The flock on `descriptor` taken within `bound` s (None: no bound), on a thread: True.

    False: not taken in time, the wait given up. The thread then goes on waiting, closes the
    descriptor when the lock comes (letting it go at once), and sets `dropped`. A daemon
    thread, not the loop's executor: one still waiting when the wait is given up must not
    hold the program's exit (the loop's default executor is joined at the end of
    `asyncio.run`). It is one blocking syscall, not a second thread of control: nothing else
    runs there. Started with the stop signals blocked, so it blocks them from birth: one still
    in `flock` after the loop has closed (the signals back at their default) must not take a
    second SIGTERM and end the agent with -15 (`stop_signals`). `cut_short` set (a stop, or a
    stop's deadline come) gives the wait up as `bound` does, one already running included. A
    thread that cannot be started (the process at its limit) raises OSError, the descriptor
    closed, as the lock's other failures do.
    """
    loop = asyncio.get_running_loop()
    taken = loop.create_future()
    guard = threading.Lock()
    state = {"given_up": False, "taken": False}

    def wait() -> None:
        fcntl.flock(descriptor, operation)
        with guard:
            if state["given_up"]:
                os.close(descriptor)
                if dropped is not None:
                    dropped.set()
                return
            state["taken"] = True
        loop.call_soon_threadsafe(taken.set_result, None)

    try:
        with signals_blocked(STOP_SIGNALS):
            threading.Thread(target=wait, name="outbox-flock-wait", daemon=True).start()
    except RuntimeError as exc:  # no thread to be had (a process at its limit): not waited for
        os.close(descriptor)
        raise OSError(errno.EAGAIN, f"cannot start a thread to wait for the lock: {exc}") from exc
    try:
        # asyncio.timeout, not wait_for (which can drop a cancellation on 3.11).
        async with asyncio.timeout(bound):
            await _first_of(taken, cut_short)
    except BaseException as exc:
        with guard:
            given_up = state["given_up"] = not state["taken"]
        if not given_up:  # taken just as the wait ended
            if isinstance(exc, TimeoutError):
                return True
            os.close(descriptor)
            raise
        if isinstance(exc, TimeoutError):
            return False
        raise
    return True


async def _first_of(taken: asyncio.Future[None], cut_short: asyncio.Event | None) -> None:
    """Until `taken` is done (never cancelled here); TimeoutError once `cut_short` is set."""
    if cut_short is None:
        await asyncio.shield(taken)
        return
    cut = asyncio.ensure_future(_until_set(cut_short))
    try:
        # asyncio.wait cancels neither when it is: `taken` stays for the thread to settle.
        await asyncio.wait([taken, cut], return_when=asyncio.FIRST_COMPLETED)
    finally:
        cut.cancel()
    if not taken.done():
        raise TimeoutError


async def _until_set(event: asyncio.Event) -> None:
    await event.wait()
