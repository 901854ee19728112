"""Which rejected messages get a log line: the first of each source and reason in a minute.

The audit trail keeps a flood of bad messages to one row per (source, reason, minute)
(collector.audit.chain), but the log said `message_rejected` for every message: 20,000
unsigned messages on made-up gateways' topics wrote 20,000 warning lines (~8 MB), and anything
that may publish on `up/` can send thousands a second, pushing the collector's own useful lines
out of journald (which drops past its rate limit) and filling its disk. Now a minute logs the
first message of each (source, reason) and at most `LINES_PER_MINUTE` lines in all; the next
minute that has a rejection first says how many went unlogged (`message_rejections_unlogged`).
The audit still counts every one. Pure: time is the messages' own arrival time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from collector.audit.chain import MINUTE
from collector.model import AuditEntry, Reason

LINES_PER_MINUTE: Final = 64
"""Rejection lines one minute may log: past it, a minute's flood is one count."""


@dataclass(frozen=True, slots=True)
class Unlogged:
    """How many rejections the minute starting at `minute` (unix seconds) did not log."""

    minute: float
    count: int


class RejectionLog:
    """Decides, batch by batch, which rejections are logged; holds one minute's keys at most."""

    def __init__(self, lines_per_minute: int = LINES_PER_MINUTE) -> None:
        self._lines = lines_per_minute
        self._minute = -math.inf
        self._said: set[tuple[str, Reason]] = set()
        self._unlogged = 0

    def judge(self, audits: Sequence[AuditEntry]) -> tuple[list[AuditEntry], list[Unlogged]]:
        """The entries to log, and the counts of earlier minutes that went unlogged."""
        logged: list[AuditEntry] = []
        unlogged: list[Unlogged] = []
        for entry in audits:
            minute = entry.at // MINUTE * MINUTE
            if minute > self._minute:
                if self._unlogged:
                    unlogged.append(Unlogged(self._minute, self._unlogged))
                self._minute, self._said, self._unlogged = minute, set(), 0
            key = (entry.gateway or "", entry.reason)
            if key in self._said or len(self._said) >= self._lines:
                self._unlogged += 1
                continue
            self._said.add(key)
            logged.append(entry)
        return logged, unlogged
