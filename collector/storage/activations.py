"""Alarms raised ahead that the collector's clock caught up with: the live feed says so, once.

Both backends run these reads; a backend gives how its sweep writes (`FeedWriting`: SQLite's
write transaction; PostgreSQL's, holding the feed lock so that two collectors sweeping at once
announce an alarm once, and telling the others' streams). The look without writing runs first
where the store reads, and finds nothing to announce on almost every sweep: a write transaction
(and the feed lock) is taken only when an alarm is due an announcement.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final

from collector.feed.core import JournalEntry, alarm_entry, written_active
from collector.feed.due import ActivationSweep, AlarmKey, Announced, Written, due_activations
from collector.readmodel import AlarmState
from collector.storage.feed import FeedStatements
from collector.storage.queries import Fetch
from collector.storage.records import ALARM_COLUMNS, alarm_state

WriteEntries = Callable[[Sequence[JournalEntry]], Awaitable[None]]
FeedWriting = Callable[[], AbstractAsyncContextManager[tuple[Fetch, WriteEntries]]]
"""A write transaction on the feed: its reads, and how it appends journal entries."""
Reading = Callable[[str], AbstractAsyncContextManager[Fetch]]
"""Where a store reads (`action` names the read in errors)."""
_KEYS: Final = 300
"""Alarms per read of their newest rows: far below either backend's parameter limit."""


_OPEN_AHEAD: Final = (
    " AND a.raise_ahead AND a.raised_at IS NOT NULL AND a.cleared_at IS NULL"
    " ORDER BY a.since, a.gateway, a.alarm_id"
)


async def _raised_ahead(
    fetch: Fetch, statements: FeedStatements, sweep: ActivationSweep
) -> list[AlarmState]:
    """Open alarms raised by an event stamped ahead whose raise came due in the sweep.

    With a window, also those due before it with a journal row written since an earlier
    sweep: another collector's, of a smaller allowance, that stored the raise only after it
    was due by ours (below every window since).
    """
    # `since` is the raise time of every raised alarm: the alarms_by_since index finds them.
    if sweep.raised_after is None:
        rows = await fetch(
            f"SELECT {ALARM_COLUMNS} FROM alarms a WHERE a.since <= ?{_OPEN_AHEAD}",
            (sweep.raised_through,),
        )
        return [alarm_state(row) for row in rows]
    rows = await fetch(
        f"SELECT {ALARM_COLUMNS} FROM alarms a WHERE a.since <= ? AND a.since > ?{_OPEN_AHEAD}",
        (sweep.raised_through, sweep.raised_after),
    )
    # The journal's newest rows by id (its primary key), then each alarm by its key.
    late = await fetch(
        f"SELECT {ALARM_COLUMNS} FROM alarms a WHERE a.since <= ? AND a.since <= ?"
        " AND (a.gateway, a.alarm_id) IN (SELECT f.gateway, "
        f"{statements.alarm_id} FROM feed f WHERE f.id > ? AND f.kind = 'alarm'){_OPEN_AHEAD}",
        (sweep.raised_through, sweep.raised_after, sweep.fresh_after),
    )
    return [alarm_state(row) for row in (*late, *rows)]


def _key(state: AlarmState) -> AlarmKey:
    return state.gateway, state.alarm_id


async def _newest_above(
    fetch: Fetch, statements: FeedStatements, keys: Sequence[AlarmKey], after: int
) -> dict[AlarmKey, Written]:
    """The newest journal row above id `after` of each alarm of `keys` that has one there."""
    found: dict[AlarmKey, Written] = {}
    wanted = set(keys)
    for start in range(0, len(keys), _KEYS):
        chunk = keys[start : start + _KEYS]
        gateways = sorted({gateway for gateway, _ in chunk})
        alarm_ids = sorted({alarm_id for _, alarm_id in chunk})
        rows = await fetch(
            "SELECT o.gateway, o.payload, o.at, o.active FROM feed o WHERE o.id IN ("
            "SELECT max(f.id) FROM feed f WHERE f.id > ? AND f.kind = 'alarm'"
            f" AND f.gateway IN ({', '.join('?' * len(gateways))})"
            f" AND {statements.alarm_id} IN ({', '.join('?' * len(alarm_ids))})"
            f" GROUP BY f.gateway, {statements.alarm_id})",
            (after, *gateways, *alarm_ids),
        )
        for row in rows:
            payload = str(row[1])
            key = (str(row[0]), str(json.loads(payload)["alarm_id"]))
            if key in wanted:
                found[key] = Written(float(row[2]), written_active(row[3], payload))
    return found


async def _newest_through(
    fetch: Fetch, statements: FeedStatements, key: AlarmKey, upto: int
) -> Written | None:
    """The newest journal row of one alarm with an id up to `upto` (read from there down)."""
    rows = await fetch(
        "SELECT f.payload, f.at, f.active FROM feed f WHERE f.id <= ? AND f.kind = 'alarm'"
        f" AND f.gateway = ? AND {statements.alarm_id} = ? ORDER BY f.id DESC LIMIT 1",
        (upto, *key),
    )
    return Written(float(rows[0][1]), written_active(rows[0][2], str(rows[0][0]))) if rows else None


async def _head(fetch: Fetch) -> int:
    return int((await fetch("SELECT coalesce(max(id), 0) FROM feed", ()))[0][0])


async def _due(
    fetch: Fetch,
    statements: FeedStatements,
    sweep: ActivationSweep,
    after: int,
    known: Mapping[AlarmKey, Written | None],
) -> tuple[list[AlarmState], dict[AlarmKey, Written | None]]:
    """The open alarms raised ahead come due whose newest row is not active; each one's row.

    The newest row of each candidate comes back too (None: none kept).
    Rows above `after` are read in one go; `known` holds the newest up to `after` of alarms
    looked at before; any other is read alarm by alarm from `after` down: a row that says it
    active may be older than any sweep of this process (another collector's, of a larger
    allowance; this one's before its clock stepped back).
    """
    candidates = await _raised_ahead(fetch, statements, sweep)
    if not candidates:
        return [], {}
    keys = [_key(state) for state in candidates]
    above = await _newest_above(fetch, statements, keys, after)
    newest: dict[AlarmKey, Written | None] = {}
    for key in keys:
        if key in above:
            newest[key] = above[key]
        elif key in known:
            newest[key] = known[key]
        else:
            newest[key] = await _newest_through(fetch, statements, key, after) if after else None
    return due_activations(candidates, newest, sweep.allowance), newest


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
        due, newest = await _due(read, statements, sweep, sweep.scan_after, {})
        if not due:
            return Announced(head)
    async with writing() as (fetch, write):
        # Only the rows written since the look are read again (under the write lock).
        due, _ = await _due(fetch, statements, sweep, head, newest)
        await write([alarm_entry(state, sweep.now, sweep.allowance) for state in due])
    return Announced(head, tuple(due))
