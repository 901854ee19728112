"""Retention of the signed blocks, once for both backends: they go with their readings' month.

A block's row keeps its signed bytes (what `collector verify` re-checks, what exports and
GET /v1/quality join each reading to). It goes once `newest_t` (the later of its arrival and
its newest reading's t) is before `collector.storage.retention.first_kept`, the start of the
oldest month whose readings are kept: its readings went with their month then. Kept whatever
their age are what the collector still works from:

- each epoch's block at `acked_through` and every block above it: every ACK names the hash at
  acked_through, the next block chains onto the newest, and a block filling an open hole
  chains onto its stored neighbours on both sides;
- a block that announced a gateway key (`gateway_keys.announced_epoch`, `announced_seq`): the
  signed evidence of the rotation, one block per rotation.

Every seq up to acked_through is stored or declared lost, so a seq at or below the epoch's
`pruned_through` (the highest seq retention deleted) that has no block and no declaration was
stored and pruned: a resend of it is a duplicate (`collector.storage.core.pruned_keys`) and
`collector verify` lists no hole there. Each epoch's blocks go in a transaction of their own,
together with the move of its pruned_through, so an ingest sees both or neither.

The readings themselves have a mark of the same kind: `retention_state.raw_kept_from`, the
start of the oldest month whose raw readings retention keeps, moved (forward only) and
committed before any reading is deleted. A reading before it cannot be told from one that was
stored and deleted, and its minutes' rollups hold what was: ingest leaves it out
(`collector.storage.readings.within_retention`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Final

from collector.storage import audit
from collector.storage.audit import ChainDb
from collector.storage.retention import (
    PruneReport,
    RetentionPolicy,
    first_kept,
    held_back,
    measured_from,
)

_EPOCHS: Final = "SELECT gateway, epoch, acked_through FROM ingest_state WHERE acked_through > 1"
_PAST: Final = (
    " FROM blocks WHERE gateway = ? AND epoch = ? AND newest_t < ? AND seq < ?"
    " AND NOT EXISTS (SELECT 1 FROM gateway_keys k WHERE k.gateway = blocks.gateway"
    " AND k.announced_epoch = blocks.epoch AND k.announced_seq = blocks.seq)"
)
_MOVE_MARK: Final = (
    "UPDATE ingest_state SET pruned_through = ?"
    " WHERE gateway = ? AND epoch = ? AND pruned_through < ?"
)

_NEWEST: Final = "SELECT max(CASE WHEN t <= ? THEN t END), count(*) FROM latest"
_KEPT_FROM: Final = "SELECT raw_kept_from FROM retention_state WHERE id = 1"
_MOVE_KEPT_FROM: Final = (
    "INSERT INTO retention_state (id, raw_kept_from) VALUES (1, ?)"
    " ON CONFLICT (id) DO UPDATE SET raw_kept_from = excluded.raw_kept_from"
    " WHERE excluded.raw_kept_from > retention_state.raw_kept_from"
)


async def newest_reading(db: ChainDb, now: float) -> tuple[float | None, bool]:
    """The t of the newest reading stored at or before `now`, and whether any is stored.

    `latest` is never pruned and its t only moves forward: a reading stamped past the clock (a
    gateway clock ahead, a forged t) would stay its newest for good, so it is no measure.
    """
    found = await db.fetch(_NEWEST, (now,))
    if not found:
        return None, False
    row = found[0]
    return (None if row[0] is None else float(row[0])), bool(row[1])


async def raw_kept_from(db: ChainDb) -> float | None:
    """The start of the oldest month of raw readings retention keeps (None: it deleted none)."""
    found = await db.fetch(_KEPT_FROM, ())
    return float(found[0][0]) if found else None


@dataclass(frozen=True, slots=True)
class Cut:
    """Where one retention pass cuts the readings' months."""

    at: float
    """The instant ages are measured from (collector.storage.retention.measured_from)."""
    kept: float
    """The start of the oldest month of raw readings kept (first_kept at `at`)."""
    held_back_to: float | None
    """The newest reading's t when it kept a month the clock alone would let go."""


async def mark_cut(
    db: ChainDb, transaction: AbstractAsyncContextManager[None], now: float, raw_days: float
) -> Cut:
    """Decide the pass's cut and, when readings are stored, mark it (`transaction` commits it).

    Measured from the newest reading when the clock is past it: a clock ahead neither deletes
    current readings nor closes their months. Readings stamped past the clock are left out of
    that newest (one from a gateway clock ahead would otherwise lift the hold-back for good).
    With no reading ever stored the mark is not moved (nothing was deleted that could come
    again), so a clock wrong at a new collector's first start closes nothing either.
    """
    newest, stored = await newest_reading(db, now)
    at = measured_from(now, newest)
    kept = first_kept(at, raw_days)
    if stored:
        # Committed before any deletion starts: an ingest that finds a reading deleted finds
        # the mark too, and leaves such readings out from then on. The mark never moves back
        # (a larger raw_days later does not bring deleted readings back).
        async with transaction:
            await db.execute(_MOVE_KEPT_FROM, (kept,))
    return Cut(at, kept, held_back(now, newest, raw_days))


ReadingsPass = Callable[["Cut", float], Awaitable[PruneReport]]
"""A backend's pruning of the readings' months at a marked cut, given raw_days: its report."""


async def retention_pass(
    db: ChainDb,
    transaction: Callable[[], AbstractAsyncContextManager[None]],
    policy: RetentionPolicy,
    now: float,
    readings: ReadingsPass,
) -> PruneReport:
    """One pass on either backend: what raw_days governs, then the audit rows (audit_days).

    Each setting prunes only what it governs: with audit_days alone no cut of the readings is
    marked (none is refused later) and nothing but audit rows goes, aged from the same instant
    as the readings would be (a clock ahead of the newest reading is held back alike).
    """
    if policy.raw_days is None:
        newest, _ = await newest_reading(db, now)
        at, report = measured_from(now, newest), PruneReport()
    else:
        cut = await mark_cut(db, transaction(), now, policy.raw_days)
        at, report = cut.at, await readings(cut, policy.raw_days)
    cutoff = policy.audit_cutoff(at)
    if cutoff is None:
        return report
    async with transaction():
        gone = await audit.prune(db, cutoff)
    return replace(report, audit_rows_dropped=gone)


EpochTransaction = Callable[[str], AbstractAsyncContextManager[None]]
"""A backend's write transaction for one gateway's epoch (PostgreSQL: its gateway lock held)."""


async def prune_blocks(db: ChainDb, transaction: EpochTransaction, kept: float) -> int:
    """Delete the blocks past retention at `kept` (first_kept); how many went."""
    dropped = 0
    for row in await db.fetch(_EPOCHS, ()):
        gateway, epoch = str(row[0]), str(row[1])
        where = (gateway, epoch, kept, int(row[2]))
        async with transaction(gateway):
            (found,) = await db.fetch(f"SELECT count(*), max(seq){_PAST}", where)
            count = int(found[0])
            if count:
                await db.execute(f"DELETE{_PAST}", where)
                await db.execute(_MOVE_MARK, (found[1], gateway, epoch, found[1]))
        dropped += count
    return dropped


async def prune_with_readings(
    db: ChainDb, transaction: EpochTransaction, kept: float
) -> PruneReport:
    """Delete what goes with the readings' months at `kept` (first_kept), on either backend.

    The live feed's journal, the presence intervals and the signed blocks: the report counts
    them (its other fields are the backend's to fill).
    """
    # The journal's events are streamed between the readings (GET /v1/stream): kept as long.
    journal = await db.execute("DELETE FROM feed WHERE at < ?", (kept,))
    # Live intervals qualify readings (GET /v1/quality): they are kept from the month the
    # readings are, one across its start cut there. The newest of a live gateway ends within
    # offline_after of now, long after that start, so ingest never extends a pruned one.
    presence = await db.execute("DELETE FROM presence WHERE until <= ?", (kept,))
    await db.execute("UPDATE presence SET since = ? WHERE since < ?", (kept, kept))
    return PruneReport(
        feed_events_dropped=journal,
        blocks_dropped=await prune_blocks(db, transaction, kept),
        presence_dropped=presence,
    )
