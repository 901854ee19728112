"""Monthly partitions of `readings`: which months a batch needs, and creating them in time.

A reading can only be stored once a partition holds its month, and `CREATE TABLE ...
PARTITION OF` takes an ACCESS EXCLUSIVE lock on `readings`. So partitions are created before
the ingest transaction, in a short transaction of their own, never inside it: there the lock
would wait for every other collector's ingest and make them wait in turn (or deadlock with
one that holds a lower lock on `readings` and asks for the same month). Creators serialize on
an advisory lock, and a table someone else made meanwhile counts as made.

The months known to exist are cached in the process: partitions are never dropped while a
collector serves, except by retention, which must `forget` them. A month before retention's
mark (`retention_state.raw_kept_from`) gets no partition: ingest stores none of its readings.

A month past the horizon (the month after the collector's clock plus `ingest.ahead_allowance`)
gets no partition either: only readings stamped ahead of the collector's clock fall there
(collector.storage.ahead), and a gateway whose clock jumps around would otherwise make two
tables per month it names (2099, and any month between), each under an ACCESS EXCLUSIVE lock
on `readings`, which retention drops no sooner than that month is past. Every time after the
newest month with a partition is held by one range partition, FUTURE (FROM that month's end
TO MAXVALUE: a DEFAULT partition would turn the newest-first probe of a series into a probe of
every month, as a default may hold any time). When a month at or past its start is made, its
readings move into the months made: ids kept, nothing lost, FUTURE read once (`_advance`).

A month before the clock is made in a transaction of its own (each holds `readings` for one
month's tables only, so another collector's ingest and open wait that long at most), and one
ingest makes at most MONTHS_PER_INGEST of them, the months of the batch's blocks that need
fewest first (`months_first`): a block naming more (every month since 1970: a reset clock, or
a hostile gateway) is left out of the ingest once they are made (`partition_months_deferred`,
BlocksDeferredError), not acknowledged, and its resend makes the next ones; the batch's other
blocks are stored without it.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Final

import asyncpg
import structlog

from collector.storage.block_retention import raw_kept_from
from collector.storage.months import Month, month_of, month_start, months_first, next_month
from collector.storage.postgres.audit import PostgresChain
from collector.storage.postgres.connection import Db
from collector.storage.postgres.locks import FUTURE_INDEX_LOCK, PARTITION_LOCK

log = structlog.get_logger("collector.storage.postgres")


def partition_name(month: Month) -> str:
    """The partition of `month`: `readings_yYYYYmMM`."""
    year, number = month
    return f"readings_y{year:04d}m{number:02d}"


# A reader in front of the ACCESS EXCLUSIVE lock queues every later reader behind it: give up
# after a while (the batch fails and is retried) rather than stall the API for long.
LOCK_TIMEOUT: Final = "5s"

MONTHS_PER_INGEST: Final = 24
"""The most months before FUTURE one ingest makes partitions for (the rest: its resend)."""

_NAME: Final = re.compile(r"readings_y(\d{4})m(\d{2})")
FUTURE: Final = "readings_future"
"""The partition of `readings` that holds every time after the newest month's partition."""
_FUTURE_BOUND: Final = re.compile(r"FROM \('?([-+0-9.eE]+)'?\) TO \(MAXVALUE\)")
# FUTURE's own index (not one of `readings`): the readings of a month the clock reached are
# found by it, however many of 2099 FUTURE holds. Made with FUTURE; one that an earlier version
# made without it gets it at open (`index_future`), never under the move's lock.
FUTURE_INDEX: Final = f"{FUTURE}_by_t"
_FUTURE_BY_T: Final = f"CREATE INDEX {FUTURE_INDEX} ON {FUTURE} (t)"
_FUTURE_BY_T_CONCURRENTLY: Final = f"CREATE INDEX CONCURRENTLY {FUTURE_INDEX} ON {FUTURE} (t)"
_ROLLUP_NAME: Final = re.compile(r"readings_1m_y(\d{4})m(\d{2})")


def _iso(month: Month) -> str:
    return f"{month[0]:04d}-{month[1]:02d}"


def deferral_message(left: Collection[Month], blocks: int) -> str:
    """Why `blocks` of a batch wait for their resend (BlocksDeferredError)."""
    return (
        f"{blocks} block(s) of the batch name {len(left)} months without a partition yet"
        f" ({_iso(min(left))} to {_iso(max(left))}; at most {MONTHS_PER_INGEST} are made an"
        " ingest): they are left to their resend"
    )


def month_of_partition(name: str) -> Month | None:
    """The month a partition name stands for (None for a table not named by `partition_name`)."""
    found = _NAME.fullmatch(name)
    return None if found is None else (int(found[1]), int(found[2]))


def ingest_horizon(arrival: float, ahead_allowance: float) -> Month:
    """The newest month an ingest arriving at `arrival` makes a partition of its own for.

    The month after the collector's clock plus `ingest.ahead_allowance`: a reading of a later
    month is stamped ahead (collector.storage.ahead), and FUTURE holds it.
    """
    return next_month(month_of(arrival + ahead_allowance))


@asynccontextmanager
async def partition_change(db: Db) -> AsyncIterator[None]:
    """A transaction that creates or drops partitions: PARTITION_LOCK held, lock waits bounded.

    Creators and droppers take turns on the advisory lock before any of them asks for the
    ACCESS EXCLUSIVE lock on a parent, and every lock waits at most LOCK_TIMEOUT.
    """
    async with db.transaction():
        await db.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        await db.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK)
        yield


async def _months_of(db: Db, parent: str, names: re.Pattern[str]) -> set[Month]:
    rows = await db.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = $1::regclass",
        parent,
    )
    return {
        (int(found[1]), int(found[2]))
        for row in rows
        if (found := names.fullmatch(row[0])) is not None
    }


async def existing_months(db: Db) -> set[Month]:
    """The months whose `readings` partitions exist now."""
    return await _months_of(db, "readings", _NAME)


async def rollup_months(db: Db) -> set[Month]:
    """The months whose `readings_1m` (rollup) partitions exist now."""
    return await _months_of(db, "readings_1m", _ROLLUP_NAME)


class Partitions:
    """The months of `readings` known to have a partition, and the creation of missing ones."""

    def __init__(self) -> None:
        self._known: set[Month] = set()
        # Retention's mark as last read: it only moves forward, so a month before it stays so.
        self._kept_from = float("-inf")
        # The first month FUTURE holds, as last read (None: not read yet).
        self._future: Month | None = None

    @property
    def known(self) -> frozenset[Month]:
        """The months this process knows to have a partition."""
        return frozenset(self._known)

    def forget(self) -> None:
        """Drop the cache (after retention dropped partitions, or a row found none)."""
        self._known.clear()
        self._future = None

    async def ensure(
        self,
        db: Db,
        months: Collection[Month],
        horizon: Month,
        needs: Sequence[Collection[Month]] = (),
    ) -> frozenset[Month]:
        """Create the partitions of `months` that do not exist; commits before returning.

        A month after `horizon` gets none of its own unless it is below FUTURE's start: FUTURE
        holds it. `db` must not be inside a transaction: the creation commits on its own. At
        most MONTHS_PER_INGEST months before FUTURE are made, chosen by `months_first` from
        `needs` (each block's months); returned: the months left without a partition.
        """
        wanted = set(self._after_mark(months)) - self._known
        wanted = self._own(wanted, horizon, self._future)
        if not wanted:
            return frozenset()
        async with partition_change(db):
            mark = await raw_kept_from(PostgresChain(db))
            if mark is not None:
                self._kept_from = max(self._kept_from, mark)
                wanted = set(self._after_mark(wanted))
            start = await _future_start(db)
            future = start if start is not None else await _make_future(db, horizon, wanted)
            # A month is ready when both its readings and its rollups have a partition.
            present = await existing_months(db) & await rollup_months(db)
            wanted = self._own(wanted, horizon, future)
            if wanted and max(wanted) >= future:
                advanced = await _advance(db, future, max(wanted))
                present |= {m for m in wanted if m >= future}
                future = advanced
        self._known |= present
        self._future = future
        missing = {m for m in wanted - present if m < future}
        making = months_first(missing, needs, MONTHS_PER_INGEST)
        for month in making:
            async with partition_change(db):  # `readings` held for this month's tables only
                mark = await raw_kept_from(PostgresChain(db))  # retention may have run since
                if mark is not None:
                    self._kept_from = max(self._kept_from, mark)
                if self._after_mark([month]):
                    await _create(db, month)
                    self._known.add(month)
        left = frozenset(missing.difference(making))
        if left:
            log.warning("partition_months_deferred", made=len(making), left=len(left))
        return left

    @staticmethod
    def _own(wanted: set[Month], horizon: Month, future: Month | None) -> set[Month]:
        """The months of `wanted` that need a partition of their own (the others: FUTURE)."""
        if future is None:
            return wanted
        return {m for m in wanted if m <= horizon or m < future}

    def _after_mark(self, months: Collection[Month]) -> list[Month]:
        """The months not wholly before retention's mark as last read."""
        return [m for m in months if month_start(next_month(m)) > self._kept_from]


def rollup_partition_name(month: Month) -> str:
    """The per-minute rollup partition of `month`: `readings_1m_yYYYYmMM`."""
    year, number = month
    return f"readings_1m_y{year:04d}m{number:02d}"


async def _create(db: Db, month: Month) -> None:
    low, high = month_start(month), month_start(next_month(month))
    # A month's readings and their rollups (collector.storage.rollups) come and go together,
    # except that retention keeps rollups longer. Bounds are literals: DDL takes no
    # parameters; they are floats we computed.
    for table, parent in (
        (partition_name(month), "readings"),
        (rollup_partition_name(month), "readings_1m"),
    ):
        statement = (
            f"CREATE TABLE IF NOT EXISTS {table} PARTITION OF {parent}"
            f" FOR VALUES FROM ({low!r}) TO ({high!r})"
        )
        try:
            async with db.transaction():  # a savepoint: a lost race must not end the outer one
                await db.execute(statement)
        except asyncpg.DuplicateTableError:
            pass  # made by someone outside the advisory lock (an operator): it exists


def _future_sql(start: Month) -> str:
    return (
        f"CREATE TABLE {FUTURE} PARTITION OF readings"
        f" FOR VALUES FROM ({month_start(start)!r}) TO (MAXVALUE)"
    )


async def _future_start(db: Db) -> Month | None:
    """The first month FUTURE holds (None: there is no FUTURE yet)."""
    bound = await db.fetchval(
        "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'readings'::regclass AND c.relname = $1",
        FUTURE,
    )
    if bound is None:
        return None
    found = _FUTURE_BOUND.search(str(bound))
    if found is None:
        raise ValueError(f"{FUTURE} is not a partition FROM a time TO MAXVALUE: {bound}")
    return month_of(float(found[1]))


async def _make_future(db: Db, horizon: Month, wanted: Collection[Month]) -> Month:
    """Create FUTURE after the newest month up to `horizon`; the month it starts at.

    Months past `horizon` that an earlier version made for readings stamped ahead are folded
    into it: detached, their rows inserted again (routed to FUTURE, ids kept), dropped. Their
    rollup partitions stay: retention drops them once their time is past.
    """
    months = await existing_months(db)
    later = sorted(m for m in months if m > horizon)
    for month in later:
        await db.execute(f"ALTER TABLE readings DETACH PARTITION {partition_name(month)}")
    mine = [m for m in (*months, *wanted) if m <= horizon]
    start = next_month(max(mine, default=horizon))
    await db.execute(_future_sql(start))
    await db.execute(_FUTURE_BY_T)
    for month in later:
        table = partition_name(month)
        await db.execute(f"INSERT INTO readings OVERRIDING SYSTEM VALUE SELECT * FROM {table}")
        await db.execute(f"DROP TABLE {table}")
    return start


async def _advance(db: Db, start: Month, newest: Month) -> Month:
    """Make every month from FUTURE's `start` to `newest` and start FUTURE after it.

    All of it holds `readings` locked (ACCESS EXCLUSIVE, which DETACH takes; taken first: a
    lock on FUTURE taken before it, to read FUTURE under a lesser one, would deadlock with a
    reader holding `readings` and waiting on FUTURE), and a gateway stuck in 2099 may have
    filled FUTURE: it is read once. FUTURE is detached,
    the months made, the rows of those months moved to them by one statement (found by
    FUTURE's index on t, not by a read of it all; ids kept: an index this lock must not wait
    for a build of, made at open by `index_future`), and FUTURE attached again after
    them. ATTACH's scan, which proves every row left fits the new bounds, is that one read:
    PostgreSQL changes no partition's bounds in place, and a CHECK constraint sparing ATTACH
    its scan costs the same scan to add.
    """
    end = month_start(next_month(newest))
    await db.execute(f"ALTER TABLE readings DETACH PARTITION {FUTURE}")
    month = start
    while month <= newest:
        await _create(db, month)
        month = next_month(month)
    await db.execute(
        f"WITH moved AS (DELETE FROM {FUTURE} WHERE t < {end!r} RETURNING *)"
        " INSERT INTO readings OVERRIDING SYSTEM VALUE SELECT * FROM moved"
    )
    await db.execute(
        f"ALTER TABLE readings ATTACH PARTITION {FUTURE} FOR VALUES FROM ({end!r}) TO (MAXVALUE)"
    )
    return month


async def index_future(db: Db) -> None:
    """Build FUTURE's index on t, CONCURRENTLY, where FUTURE lacks it or has it INVALID.

    A FUTURE an earlier version made has no such index, and the move must not build it: a
    plain CREATE INDEX there holds `readings` ACCESS EXCLUSIVE for a read and sort of all of
    FUTURE (2,000,000 readings of 2099: over 1 s), which lock_timeout does not bound. Built
    concurrently, writers and readers go on (ingest into FUTURE included). An index a
    concurrent build cut short left INVALID (never used, yet `IF NOT EXISTS` would take it for
    made) is dropped and built again. `db` must be outside a transaction and not hold
    MIGRATION_LOCK (the caller is `schema.migrate`, after the migrations): the build waits for
    every older snapshot, that of a collector waiting for the lock too. Two collectors opening
    at once may both find the index missing: FUTURE_INDEX_LOCK, only tried, lets one build it
    (and look again under it) while the other goes on without it
    (`future_partition_index_left_to_other`).

    Another collector's move meanwhile holds `readings` and waits for FUTURE, which the build
    holds, while the build waits for the move's snapshot: PostgreSQL ends one of the two. An
    ended move's batch is tried again; an ended build is started again once (the move it
    met is then done), and after a second one left to the next open: a collector must not fail
    to start for an index the move can do without (it then reads FUTURE once more).
    """
    present = await db.fetchval("SELECT to_regclass($1) IS NOT NULL", FUTURE)
    valid = await db.fetchval(  # None: no such index
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)"
        " AND indrelid = to_regclass($2)",
        FUTURE_INDEX,
        FUTURE,
    )
    if not present or valid:
        return
    if not await db.fetchval("SELECT pg_try_advisory_lock($1)", FUTURE_INDEX_LOCK):
        log.info("future_partition_index_left_to_other", index=FUTURE_INDEX)
        return
    try:
        await _build_future_index(db)
    finally:
        if not db.is_closed():  # a lost connection has given the lock back already
            await db.execute("SELECT pg_advisory_unlock($1)", FUTURE_INDEX_LOCK)


async def _build_future_index(db: Db) -> None:
    """Build FUTURE's index unless valid now (another collector's build may have ended)."""
    valid = await db.fetchval(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)", FUTURE_INDEX
    )
    if valid:
        return
    started = time.monotonic()
    for attempt in (1, 2):
        try:
            await db.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {FUTURE_INDEX}")
            await db.execute(_FUTURE_BY_T_CONCURRENTLY)
        except asyncpg.DeadlockDetectedError as exc:
            log.warning("future_partition_index_build_ended", attempt=attempt, reason=str(exc))
            continue
        seconds = round(time.monotonic() - started, 3)
        log.info("future_partition_indexed", index=FUTURE_INDEX, seconds=seconds)
        return
    log.warning("future_partition_index_left_to_next_open", index=FUTURE_INDEX)
