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
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import Final

import asyncpg

from collector.storage.block_retention import raw_kept_from
from collector.storage.months import (
    Month,
    month_start,
    next_month,
)
from collector.storage.postgres.audit import PostgresChain
from collector.storage.postgres.connection import Db
from collector.storage.postgres.locks import PARTITION_LOCK


def partition_name(month: Month) -> str:
    """The partition of `month`: `readings_yYYYYmMM`."""
    year, number = month
    return f"readings_y{year:04d}m{number:02d}"


# A reader in front of the ACCESS EXCLUSIVE lock queues every later reader behind it: give up
# after a while (the batch fails and is retried) rather than stall the API for long.
LOCK_TIMEOUT: Final = "5s"

_NAME: Final = re.compile(r"readings_y(\d{4})m(\d{2})")
_ROLLUP_NAME: Final = re.compile(r"readings_1m_y(\d{4})m(\d{2})")


def month_of_partition(name: str) -> Month | None:
    """The month a partition name stands for (None for a table not named by `partition_name`)."""
    found = _NAME.fullmatch(name)
    return None if found is None else (int(found[1]), int(found[2]))


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

    @property
    def known(self) -> frozenset[Month]:
        """The months this process knows to have a partition."""
        return frozenset(self._known)

    def forget(self) -> None:
        """Drop the cache (after retention dropped partitions, or a row found none)."""
        self._known.clear()

    async def ensure(self, db: Db, months: Collection[Month]) -> None:
        """Create the partitions of `months` that do not exist; commits before returning.

        `db` must not be inside a transaction: the creation commits on its own.
        """
        wanted = set(self._after_mark(months)) - self._known
        if not wanted:
            return
        async with partition_change(db):
            mark = await raw_kept_from(PostgresChain(db))
            if mark is not None:
                self._kept_from = max(self._kept_from, mark)
                wanted = set(self._after_mark(wanted))
            # A month is ready when both its readings and its rollups have a partition.
            present = await existing_months(db) & await rollup_months(db)
            for month in sorted(wanted - present):
                await _create(db, month)
        self._known |= wanted | present

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
