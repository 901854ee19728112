"""Readings the agent had to let go without sealing them: how many, and when they were taken.

The sealer counts what its memory ring lets go while the outbox cannot be written; a stop on
a full disk counts what it still held. The tally becomes one `disk_full` gap record in the
first block sealed once the disk takes writes again (after a restart too: the tally is kept
in the seq mark beside the outbox).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from specs.records import (
    GapReason,
    GapRecord,
    Reading,
    Record,
    RecordFormatError,
    iso_time,
    optional_iso_time,
    parse_iso_time,
)


@dataclass(frozen=True, slots=True)
class LostReadings:
    """A count of readings let go and the span of their times (unix seconds)."""

    count: int = 0
    t_from: float | None = None
    t_to: float | None = None

    def add(self, record: Record) -> LostReadings:
        """The tally with one more record let go."""
        if not isinstance(record, Reading):
            return LostReadings(self.count + 1, self.t_from, self.t_to)
        try:
            t = parse_iso_time(record.t)
        except RecordFormatError:
            # A time the wire refuses (instrument garbage): counted all the same, outside the
            # span. The sealer counts what it holds while a seal fails or waits, and a count
            # that raised there ended the sealer's run, held readings and all.
            return LostReadings(self.count + 1, self.t_from, self.t_to)
        return self.merge(LostReadings(1, t, t))

    def add_all(self, records: Iterable[Record]) -> LostReadings:
        """The tally with every one of `records` let go too."""
        tally = self
        for record in records:
            tally = tally.add(record)
        return tally

    def merge(self, other: LostReadings) -> LostReadings:
        """Both tallies together."""
        return LostReadings(
            self.count + other.count,
            _earliest(self.t_from, other.t_from),
            _latest(self.t_to, other.t_to),
        )

    def less(self, named: LostReadings) -> LostReadings:
        """What is left once `named` (taken from this tally, then declared) is off it.

        Only the count can be taken off: the span stays as wide (it still covers what is
        left), and an empty tally has none.
        """
        count = self.count - named.count
        return LostReadings(count, self.t_from, self.t_to) if count > 0 else LostReadings()

    def gap(self, now: float) -> GapRecord:
        """The gap record that names these readings (no block range: none was sealed)."""
        return GapRecord(
            t=iso_time(now),
            reason=GapReason.DISK_FULL,
            lost=self.count,
            t_from=optional_iso_time(self.t_from),
            t_to=optional_iso_time(self.t_to),
        )


# No readings let go (a default that is not a call each time).
NONE_LOST = LostReadings()


def at_risk(lost: LostReadings, held: Sequence[Record], ends: int = 1000) -> LostReadings:
    """`lost` and the readings `held` together: every one counted, times from both ends.

    `held` is in the order polled, so its span is at its first and last readings: only
    `ends` from each end are parsed (the sealer notes this every retry, with up to 100,000
    held; a reader polled out of step by more than `ends` readings narrows the span a little).
    """
    if len(held) <= 2 * ends:
        return lost.add_all(held)
    first = lost.add_all(itertools.islice(held, ends))
    both = first.add_all(itertools.islice(reversed(held), ends))
    return LostReadings(lost.count + len(held), both.t_from, both.t_to)


def _earliest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _latest(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)
