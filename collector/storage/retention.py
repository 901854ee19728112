"""Retention, decided purely: which whole months of raw readings and rollups have expired.

Raw readings are kept `raw_days`; their per-minute rollups (min, max, sum, count and the
last value per (gateway, point, minute, quota, unit), folded in by every ingest:
collector.storage.rollups) are kept `rollup_days`. Only whole months of readings go, and
only once every instant of the month is older than the limit: a month is never thinned row
by row (PostgreSQL drops its partition), and a month that is partly young stays whole. The
live feed's journal (alarm, gap and status events GET /v1/stream sends between the
readings), the gateways' presence intervals (GET /v1/quality), which qualify the readings,
and the signed blocks the readings came in (but those ingest still works from:
`collector.storage.block_retention`) go with the readings' month, row by row: from
`first_kept` on they stay. `None` keeps everything for ever. The audit chain
(collector.audit.chain) keeps its rows `audit_days`, never fewer than MIN_AUDIT_DAYS (GB/T
22239 level 3 asks for 180 days of audit records): its oldest rows go once every occurrence
they count is that old. A pass runs when either `raw_days` or `audit_days` is set (`prunes`)
and prunes only what each governs: with `audit_days` alone, the audit rows, and no cut of
the readings is marked.

Ages are measured from the collector's clock, but never from later than the newest reading
stored (`measured_from`): the readings' t come from the gateways' clocks, which a jump of the
collector's clock does not move. A collector clock ahead (set wrong, an NTP step) would
otherwise delete current readings and close their months for good (their readings are
refused from then on, collector.storage.block_retention); held back, it deletes nothing a
right clock would keep. A province with no reading for a while keeps the `raw_days` before its
newest one; its older months still go. With no reading stored at or before the clock, the
clock is used (a reading stamped past it, from a gateway clock ahead, is no measure). The
audit rows are aged from the same instant (`audit_cutoff` of it): on the clock alone, one a
month ahead deleted them at ~150 days, under the 180 GB/T 22239 asks for.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from collector.storage.months import Month, month_of, month_start, next_month

DAY = 86_400.0
MIN_AUDIT_DAYS = 180.0
"""Audit rows younger than this are never pruned, whatever a policy says."""


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long raw readings, their rollups and audit rows are kept (days; None: for ever)."""

    raw_days: float | None = None
    rollup_days: float | None = None
    audit_days: float | None = MIN_AUDIT_DAYS

    @property
    def prunes(self) -> bool:
        """Whether a retention pass has anything to do: raw_days or audit_days is set."""
        return self.raw_days is not None or self.audit_days is not None

    def audit_cutoff(self, at: float) -> float | None:
        """Audit rows whose every occurrence is before this may go (never younger than 180 d).

        `at` is the instant ages are measured from (`measured_from`), as for the readings.
        None: audit_days is not set, every row is kept.
        """
        if self.audit_days is None:
            return None
        return at - max(self.audit_days, MIN_AUDIT_DAYS) * DAY


def first_kept(now: float, days: float) -> float:
    """The start of the oldest month kept at `now`: every month before it is older than `days`."""
    return month_start(month_of(now - days * DAY))


def measured_from(now: float, newest: float | None) -> float:
    """The instant ages are measured from: `now`, but no later than the newest reading's t."""
    return now if newest is None else min(now, newest)


def held_back(now: float, newest: float | None, days: float) -> float | None:
    """`newest` when it keeps a month of readings that `now` alone would let go, else None."""
    if newest is None or first_kept(newest, days) >= first_kept(now, days):
        return None
    return newest


def _expired(month: Month, now: float, days: float | None) -> bool:
    return days is not None and month_start(next_month(month)) <= first_kept(now, days)


def expired(months: Iterable[Month], now: float, days: float | None) -> list[Month]:
    """The months, oldest first, whose whole span is older than `days` at `now`."""
    return sorted(m for m in months if _expired(m, now, days))


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What one retention run did: the months dropped, and how many rows of each kind went."""

    raw_months_dropped: tuple[str, ...] = ()
    rollup_months_dropped: tuple[str, ...] = ()
    readings_dropped: int = 0
    feed_events_dropped: int = 0
    audit_rows_dropped: int = 0
    blocks_dropped: int = 0
    presence_dropped: int = 0
    """Presence intervals deleted whole (one that crosses the cut is shortened, not counted)."""
    held_back_to: float | None = None
    """The newest reading's t when ages were measured from it, not from the clock, and that
    kept a month the clock would have let go (a clock ahead, or no reading since); else None."""

    @property
    def deleted(self) -> bool:
        """Whether the run deleted anything: audit rows alone count (audit_days alone).

        So do presence intervals alone (a gateway heard in a month none of its readings are of).
        """
        return bool(
            self.raw_months_dropped
            or self.rollup_months_dropped
            or self.readings_dropped
            or self.feed_events_dropped
            or self.audit_rows_dropped
            or self.blocks_dropped
            or self.presence_dropped
        )
