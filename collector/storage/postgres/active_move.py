"""Moving an alarm journal row's `active` out of its payload into its column (migration 12).

Migration 12 only adds the nullable column (a catalogue change: its ACCESS EXCLUSIVE lock on
`feed` is held for an instant). The payloads that 6f577c0 wrote `active` into are moved here,
after the migrations, in batches of ids that each commit on their own: a batch takes row locks
on the alarm rows it rewrites and nothing on the table that ingest's inserts or a stream's reads
wait for. One UPDATE in the migration's transaction held the table exclusively for the whole
rewrite (15 s for 1,000,000 alarm rows; older collectors' ingest and streams stalled).

Idempotent: a row moved has no `active` in its payload and is skipped, so two collectors moving
at once (`schema.migrate` runs this under the migration lock anyway) each find only what is
left. Unmoved rows read as before (`collector.feed.core.written_active` takes the payload's
`active` where the column is null).

Each batch records the id it moved through, in the same transaction, as the comment of the
column `feed.active` (no table of its own, so no migration; dropping the column on a rollback
drops the mark with it). An open starts from that mark: a finished move is not walked again
(alarm rows from before `active` existed match `active IS NULL` for good, and every open
rescanned the whole journal under the migration lock), a move cut short resumes where it
stopped, and rows a 6f577c0 collector still running writes later, above the mark, are moved by
a later open (a scan bounded by what was written since).
"""

from __future__ import annotations

import time
from typing import Final

import asyncpg
import structlog

from collector.storage.postgres.connection import Db

MOVE_BATCH: Final = 5000
"""Ids per transaction: a batch's row locks and rewrite stay short (milliseconds)."""

# strpos first: the jsonb parse runs only on payloads naming "active", not on every alarm row.
_MOVE: Final = (
    "UPDATE feed SET active = (payload::jsonb ->> 'active')::boolean,"
    " payload = (payload::jsonb - 'active')::text"
    " WHERE id > $1::bigint AND id <= $2::bigint AND kind = 'alarm' AND active IS NULL"
    " AND strpos(payload, '\"active\"') > 0 AND jsonb_exists(payload::jsonb, 'active')"
)

_MARK_PREFIX: Final = "payload active moved through id "

# The comment of `feed.active`: COMMENT takes SHARE UPDATE EXCLUSIVE, which ingest's inserts,
# streams' reads and retention's deletes do not wait for.
_MARK: Final = (
    "SELECT col_description('feed'::regclass, attnum) FROM pg_attribute"
    " WHERE attrelid = 'feed'::regclass AND attname = 'active'"
)

log = structlog.get_logger("collector.storage.postgres")


async def moved_through(db: Db) -> int:
    """The id up to which every alarm row's `active` is in its column (0 before any move)."""
    text = await db.fetchval(_MARK)
    if not isinstance(text, str) or not text.startswith(_MARK_PREFIX):
        return 0
    return int(text.removeprefix(_MARK_PREFIX))


async def _move_batch(db: Db, first: int, last: int) -> int:
    """Move the rows of ids (first, last] and mark `last` in one transaction; rows moved."""
    async with db.transaction():
        status = await db.execute(_MOVE, first, last)
        # int: nothing but digits reaches the utility statement (it takes no parameters).
        await db.execute(f"COMMENT ON COLUMN feed.active IS '{_MARK_PREFIX}{int(last)}'")
    return int(status.split()[-1])


async def move_active(db: Db) -> int:
    """Move `active` out of every alarm payload still keeping it; how many rows were moved.

    `db` must be outside a transaction: each batch commits on its own. Rows a collector of
    6f577c0 still running writes afterwards keep theirs in the payload (read as before; the
    next open moves them).
    """
    low, high = await db.fetchrow("SELECT min(id), max(id) FROM feed") or (None, None)
    if low is None or high is None:
        return 0
    # Ids below the journal's first (retention deleted them) need no batches of their own.
    start = max(await moved_through(db), int(low) - 1)
    if int(high) <= start:
        return 0
    started = time.monotonic()
    moved = batches = 0
    for first in range(start, int(high), MOVE_BATCH):
        last = min(first + MOVE_BATCH, int(high))
        try:
            moved += await _move_batch(db, first, last)
        except asyncpg.DeadlockDetectedError:
            # A batch's row locks against retention's DELETE FROM feed WHERE at < ...: the
            # batch was rolled back whole (mark included); once more rather than fail the open.
            log.warning("journal_active_batch_deadlocked", first=first, last=last)
            moved += await _move_batch(db, first, last)
        batches += 1
    log.info(  # at least one batch ran: the range above was not empty
        "journal_active_moved",
        rows=moved,
        batches=batches,
        moved_through=int(high),
        seconds=round(time.monotonic() - started, 3),
    )
    return moved
