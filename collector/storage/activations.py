"""Alarms raised ahead that the collector's clock caught up with: the live feed says so, once.

Both backends run these reads; a backend gives how its sweep writes (`FeedWriting`: SQLite's
write transaction; PostgreSQL's, holding the feed lock so that two collectors sweeping at once
announce an alarm once, and telling the others' streams). The look without writing runs first
where the store reads, and finds nothing to announce on almost every sweep: a write transaction
(and the feed lock) is taken only when an alarm is due an announcement.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager

from collector.feed.core import JournalEntry, alarm_entry
from collector.feed.due import ActivationSweep, AlarmKey, Announced, due_activations
from collector.readmodel import AlarmState
from collector.storage.feed import FeedStatements
from collector.storage.queries import Fetch
from collector.storage.records import ALARM_COLUMNS, alarm_state

WriteEntries = Callable[[Sequence[JournalEntry]], Awaitable[None]]
FeedWriting = Callable[[], AbstractAsyncContextManager[tuple[Fetch, WriteEntries]]]
"""A write transaction on the feed: its reads, and how it appends journal entries."""
Reading = Callable[[str], AbstractAsyncContextManager[Fetch]]
"""Where a store reads (`action` names the read in errors)."""


async def _raised_ahead(fetch: Fetch, sweep: ActivationSweep) -> list[AlarmState]:
    """Open alarms raised by an event stamped ahead whose raise came due in the sweep."""
    # `since` is the raise time of every raised alarm: the alarms_by_since index finds them.
    lower = "" if sweep.raised_after is None else " AND a.since > ?"
    bounds = () if sweep.raised_after is None else (sweep.raised_after,)
    rows = await fetch(
        f"SELECT {ALARM_COLUMNS} FROM alarms a WHERE a.since <= ?{lower}"
        " AND a.raise_ahead AND a.raised_at IS NOT NULL AND a.cleared_at IS NULL"
        " ORDER BY a.since, a.gateway, a.alarm_id",
        (sweep.raised_through, *bounds),
    )
    return [alarm_state(row) for row in rows]


async def _announced_at(
    fetch: Fetch, statements: FeedStatements, after: int, since: float
) -> dict[AlarmKey, float]:
    """The newest `at` of each alarm's journal rows above id `after` written from `since` on."""
    rows = await fetch(
        f"SELECT f.gateway, {statements.alarm_id}, max(f.at) FROM feed f"
        " WHERE f.id > ? AND f.kind = 'alarm' AND f.at >= ?"
        f" GROUP BY f.gateway, {statements.alarm_id}",
        (after, since),
    )
    return {(str(row[0]), str(row[1])): float(row[2]) for row in rows}


async def _head(fetch: Fetch) -> int:
    return int((await fetch("SELECT coalesce(max(id), 0) FROM feed", ()))[0][0])


async def _due(
    fetch: Fetch, statements: FeedStatements, sweep: ActivationSweep
) -> list[AlarmState]:
    """The open alarms raised ahead come due in the sweep that no journal row announces yet."""
    candidates = await _raised_ahead(fetch, sweep)
    if not candidates:
        return []
    since = min(state.since for state in candidates) - sweep.allowance
    written = await _announced_at(fetch, statements, sweep.scan_after, since)
    return due_activations(candidates, written, sweep.allowance)


async def announce(
    sweep: ActivationSweep, *, reading: Reading, writing: FeedWriting, statements: FeedStatements
) -> Announced:
    """Write an alarm event, active, for each open alarm raised ahead that came due.

    Each once: not when a journal row of the alarm written since it came due says so already
    (this process's, another collector's, one before a restart). Looked at first where the
    store reads; judged again inside the write transaction, taken only when one is due.
    """
    async with reading("looking for alarms come due") as read:
        head = await _head(read)
        if not await _due(read, statements, sweep):
            return Announced(head)
    async with writing() as (fetch, write):
        due = await _due(fetch, statements, sweep)
        await write([alarm_entry(state, sweep.now) for state in due])
    return Announced(head, tuple(due))
