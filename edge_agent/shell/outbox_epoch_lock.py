"""Epoch starts and start-up checks of one outbox, one process at a time.

An epoch start journals its epoch before its first block commits (`Outbox.start_new_epoch`:
a start cut short must leave what that block declares to the next start), and a start-up
check reads the journal before the file (`outbox_recovery.recovery_gaps`). A second process
opening the outbox (`edge-agent backfill`, beside the running agent) that read them in
between saw the journal ahead of the file, took the file for another copy and started a
third epoch over the agent's. So both hold an exclusive `flock` on `<outbox>.epoch-lock`: an
opening from before it reads the journal until its epoch is journaled and committed, a start
from before it journals its epoch until the epoch's first block commits. The other waits, in a
thread (the agent's event loop goes on), at most `timeout` seconds: then
OutboxUnavailableError, nothing changed. An opening's wait also ends on a stop
(`outbox_open.open_outbox`'s `stop`, 0303d85, given to `held`): OpeningStoppedError, nothing
changed.
"""

from __future__ import annotations

import asyncio
import enum
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import structlog

from edge_agent.shell.flock_wait import taken_now, taken_within
from edge_agent.shell.outbox_recovery import OutboxUnavailableError

log = structlog.get_logger("edge_agent.outbox")


class OpeningStoppedError(Exception):
    """The agent was stopped while its opening waited for another process's lock.

    Nothing was changed: the waits come before anything is written. Not an error: the agent
    exits as a stop does (a refusal at 120 s would come after systemd's SIGKILL).
    """


class FreeRun(enum.Enum):
    """What `EpochLock.run_if_free` did."""

    DONE = "done"
    BUSY = "busy"
    NO_LOCK_FILE = "no_lock_file"


class EpochLock:
    """The lock of one outbox's epoch starts, taken again freely by the task holding it."""

    def __init__(self, path: Path, timeout: float) -> None:
        self._path = path
        self._timeout = timeout
        # An opening holds it across the epoch start it may make: taken again, not waited for,
        # by that task only. Another task of this process waits its turn (the outbox lock no
        # longer serialises epoch starts: it is taken after this one, `Outbox.start_new_epoch`).
        self._depth = 0
        self._owner: asyncio.Task[object] | None = None
        self._turn = asyncio.Lock()

    @classmethod
    def beside(cls, outbox: Path, timeout: float) -> EpochLock:
        """The epoch lock of an outbox file."""
        return cls(outbox.with_name(outbox.name + ".epoch-lock"), timeout)

    @asynccontextmanager
    async def held(
        self, *, wait: bool = True, stop: asyncio.Event | None = None
    ) -> AsyncIterator[None]:
        """Held by this process (released on exit, and by the kernel if the process dies).

        With `wait` False a lock another process holds raises OutboxUnavailableError at once.
        `stop` set while it is waited for gives the wait up: OpeningStoppedError.
        """
        if self._depth and asyncio.current_task() is self._owner:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        async with self._turn, self._flock(wait, stop):
            # Its holder even when the lock file could not be made (`_flock`): an opening's
            # own epoch start takes it again, or would wait on its own turn for good.
            self._depth, self._owner = 1, asyncio.current_task()
            try:
                yield
            finally:
                self._depth, self._owner = 0, None

    @asynccontextmanager
    async def _flock(self, wait: bool, stop: asyncio.Event | None) -> AsyncIterator[None]:
        """The flock itself, taken by one task of this process at a time (`_turn`)."""
        descriptor = self._opened()
        if descriptor is None:
            # A full disk (no room for the empty file) must not stop the start: it goes on
            # unserialised, as before the lock (the disk full tests).
            yield
            return
        busy = not taken_now(descriptor)
        if busy:
            log.warning("outbox_epoch_lock_busy", path=str(self._path), waited=wait)
            if not wait:
                os.close(descriptor)
                raise OutboxUnavailableError(
                    f"{self._path}: another process has been starting an epoch of the outbox or"
                    " opening it since before this start (the running agent, `edge-agent"
                    " backfill`); nothing was changed: try again once it is done"
                )
            await waited(descriptor, self._path, self._timeout, stop)  # closed if not taken
        try:
            yield
        finally:
            os.close(descriptor)  # the lock goes with it

    def run_if_free(self, work: Callable[[], None]) -> FreeRun:
        """`work()` under the lock if it is free now, never waited for (blocking: on a thread).

        BUSY, `work` not run: held by another process, or by a task of this one (another
        descriptor: flock does not nest across them). NO_LOCK_FILE: it cannot be made.
        """
        descriptor = self._opened()
        if descriptor is None:
            return FreeRun.NO_LOCK_FILE
        try:
            if not taken_now(descriptor):
                return FreeRun.BUSY
            work()
            return FreeRun.DONE
        finally:
            os.close(descriptor)  # the lock goes with it

    def _opened(self) -> int | None:
        """A descriptor of the lock file, made if missing; None (logged) if it cannot be."""
        try:
            return os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            log.warning("outbox_epoch_lock_not_made", path=str(self._path), error=str(exc))
            return None


async def waited(
    descriptor: int, path: Path, bound: float, stop: asyncio.Event | None = None
) -> None:
    """Take the lock on `descriptor`, waited for on a thread of its own, at most `bound` s.

    The descriptor is closed (by that thread) if the lock comes too late, or once `stop` is
    set (`flock_wait.taken_within`'s `cut_short`): OpeningStoppedError.
    """
    if not await taken_within(descriptor, bound, cut_short=stop):
        if stop is not None and stop.is_set():
            raise OpeningStoppedError(f"stopped while waiting for {path}")
        raise OutboxUnavailableError(
            f"{path}: another process has been starting an epoch of the outbox or opening"
            f" it for {bound:g} s (the running agent, `edge-agent backfill`); nothing was"
            " changed: try again once it is done"
        )
