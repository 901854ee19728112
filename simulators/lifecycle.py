"""What every simulator shares: `async with`, its update schedule, stopping cleanly.

`async with` starts and stops a simulator; its update task runs on `ticks`, an absolute
schedule, and `cancel_task` ends it; its command line stops on SIGINT or SIGTERM and runs
with `run_command` (`print_rows` for a map printed instead of serving).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import signal
import sys
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping


@dataclass(frozen=True, slots=True)
class Tick:
    """One beat of `ticks`: its number (from 1), seconds since the start and since the last."""

    number: int
    elapsed: float
    dt: float


async def ticks(interval: float) -> AsyncIterator[Tick]:
    """Yield every `interval` seconds, forever, on an absolute schedule.

    Tick k is due at start + k * interval however long the work after each tick took, so the
    cadence does not drift; a late tick is yielded at once.
    """
    loop = asyncio.get_running_loop()
    started = last = loop.time()
    for number in itertools.count(1):
        await asyncio.sleep(max(0.0, started + number * interval - loop.time()))
        now = loop.time()
        yield Tick(number, now - started, now - last)
        last = now


def stop_on_signals() -> asyncio.Event:
    """Return an event that SIGINT and SIGTERM set (needs a running loop).

    Called before a simulator starts, so a signal during start-up stops it cleanly too.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def run_command(
    serve: Coroutine[object, object, None], log: logging.Logger, *, quiet: Iterable[str] = ()
) -> int:
    """Serve until SIGINT or SIGTERM with timed log lines; the process exit code.

    `quiet` names loggers kept to warnings (asyncua logs every request at INFO). A port that
    cannot be listened on is one error line and exit code 1, not a traceback.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for name in quiet:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        asyncio.run(serve)
    except OSError as exc:
        log.error("%s", exc)  # noqa: TRY400 - a busy port is one line, not a traceback
        return 1
    return 0


def print_rows(rows: Iterable[Mapping[str, object]]) -> None:
    """Print a simulator's map as JSON lines (Chinese text as it is), for scripts."""
    for row in rows:
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")


async def cancel_task(task: asyncio.Task[None] | None) -> None:
    """Cancel a simulator's background task and wait until it has ended."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Simulator:
    """Base of every simulator: `async with` starts it (when `starts_on_enter`) and stops it."""

    starts_on_enter = True

    async def start(self) -> None:
        """Start serving; simulators that are started by a factory leave this as is."""

    async def stop(self) -> None:
        """Stop serving; safe to call twice."""
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        if self.starts_on_enter:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
