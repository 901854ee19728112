"""Which lines of a flood are logged: the first of each key in a minute, a bounded number in all.

Anything that may publish on a topic a program listens on can make it reject messages as fast
as it handles them, and one warning line each fills the program's disk and pushes its useful
lines out of journald (which drops past its rate limit): 20,000 unsigned messages wrote 20,000
`message_rejected` lines (~8 MB) at the collector. A minute writes the first line of each key
(a source and a reason, say) and at most `LINES_PER_MINUTE` in all; the first line admitted in
a later minute comes with the count of those left unwritten, for the caller to log first.

Minutes are counted on a monotonic clock: on the wall clock a step back (NTP, an operator)
would make the current minute last until the clock came back, every line of it unwritten.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final, Protocol

LINES_PER_MINUTE: Final = 64
"""Lines one minute may write: past it, a minute's flood is one count."""

MINUTE: Final = 60.0


@dataclass(frozen=True, slots=True)
class Admission:
    """Whether a line is written, and how many earlier lines went unwritten (0: none to say)."""

    write: bool
    unwritten: int = 0


class LineLimit:
    """Decides line by line which are written; holds one minute's keys at most."""

    def __init__(
        self,
        lines_per_minute: int = LINES_PER_MINUTE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lines = lines_per_minute
        self._clock = clock
        self._minute = -math.inf
        self._said: set[Hashable] = set()
        self._unwritten = 0

    def admit(self, key: Hashable) -> Admission:
        """Whether the line of `key` is written now, with the count the minutes before left."""
        minute = self._clock() // MINUTE
        unwritten = 0
        if minute > self._minute:
            unwritten, self._unwritten = self._unwritten, 0
            self._minute, self._said = minute, set()
        if key in self._said or len(self._said) >= self._lines:
            self._unwritten += unwritten + 1  # a count not yet said waits with this minute's
            return Admission(write=False)
        self._said.add(key)
        return Admission(write=True, unwritten=unwritten)


class Warns(Protocol):
    """A structlog logger, as far as a limited line needs it."""

    def warning(self, event: str, **fields: object) -> object:
        """Log `event` at warning level."""


def warn_limited(
    log: Warns, limit: LineLimit, key: Hashable, event: str, unlogged: str, **fields: object
) -> None:
    """Log `event` if `limit` admits `key`, after `unlogged` with the count left out before."""
    admitted = limit.admit(key)
    if admitted.unwritten:
        log.warning(unlogged, count=admitted.unwritten)
    if admitted.write:
        log.warning(event, **fields)
