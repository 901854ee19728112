"""Moving an alarm journal row's `active` out of its payload into its column (migration 12).

Migration 12 only adds the nullable column (a catalogue change: its ACCESS EXCLUSIVE lock on
`feed` is held for an instant). The payloads that 6f577c0 wrote `active` into are moved here,
after the migrations, in batches of ids that each commit on their own: a batch takes row locks
on the alarm rows it rewrites and nothing on the table that ingest's inserts or a stream's reads
wait for. One UPDATE in the migration's transaction held the table exclusively for the whole
rewrite (15 s for 1,000,000 alarm rows; older collectors' ingest and streams stalled).

Idempotent: a row moved has no `active` in its payload and is skipped, so a run cut short is
finished by the next open, and two collectors moving at once (`schema.migrate` runs this under
the migration lock anyway) each find only what is left. Unmoved rows read as before
(`collector.feed.core.written_active` takes the payload's `active` where the column is null).
"""

from __future__ import annotations

import time
from typing import Final

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

log = structlog.get_logger("collector.storage.postgres")


async def move_active(db: Db) -> int:
    """Move `active` out of every alarm payload still keeping it; how many rows were moved.

    `db` must be outside a transaction: each batch commits on its own. Rows a collector of
    6f577c0 still running writes afterwards keep theirs in the payload (read as before; the
    next open moves them).
    """
    low, high = await db.fetchrow("SELECT min(id), max(id) FROM feed") or (None, None)
    if low is None or high is None:
        return 0
    started = time.monotonic()
    moved = 0
    for first in range(int(low) - 1, int(high), MOVE_BATCH):
        status = await db.execute(_MOVE, first, first + MOVE_BATCH)
        moved += int(status.split()[-1])
    if moved:
        seconds = round(time.monotonic() - started, 3)
        log.info("journal_active_moved", rows=moved, batch=MOVE_BATCH, seconds=seconds)
    return moved
