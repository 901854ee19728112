"""PostgreSQL: a month the clock reached moves out of `readings_future` (partitions.py).

Every time after the newest month's partition is one partition, `readings_future`; a gateway
whose clock is stuck in 2099 may have filled it. When the collector's clock reaches the month
it starts at, that month gets its partition and its readings move there, all under an ACCESS
EXCLUSIVE lock on `readings` (ingest and queries wait). The move must read `readings_future`
once (PostgreSQL cannot shrink a partition's bounds without proving the rest of it fits), keep
ids, lose and duplicate nothing, also while other sessions write readings.
"""

from __future__ import annotations

import asyncio
import calendar
from collections.abc import AsyncIterator
from typing import Final

import asyncpg
import pytest
from structlog.testing import capture_logs

from collector.storage.months import Month, month_start, next_month
from collector.storage.postgres import PostgresStorage
from collector.storage.postgres.locks import MIGRATION_LOCK
from collector.storage.postgres.partitions import (
    FUTURE,
    FUTURE_INDEX,
    Partitions,
    partition_name,
)
from tests.support.postgres import postgres_connection

NOW: Final = float(calendar.timegm((2027, 1, 10, 0, 0, 0)))
REACHED: Final[Month] = (2027, 3)  # where FUTURE starts while the clock is in January
AFTER: Final[Month] = (2027, 5)  # where it starts once the clock reached March (April is made)
STUCK: Final = float(calendar.timegm((2099, 1, 1, 0, 0, 0)))  # a gateway's RTC reset
JUNK: Final = 20_000
AHEAD: Final = 40
VISITS: Final = 3

_COLUMNS: Final = "gateway, epoch, seq, idx, point, quota, t, value, unit, quality, flags"


def _insert(rows: str) -> str:
    """An INSERT of `rows` (a SELECT of (gateway, seq, idx, point, t)) into `readings`."""
    return (
        f"INSERT INTO readings ({_COLUMNS}) SELECT r.gateway, 'e1', r.seq, r.idx, r.point,"
        f" 'WHP-LT', r.t, 1.5, 'm', 'good', '[]' FROM ({rows}) AS r(gateway, seq, idx, point, t)"
    )


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    """A connection to a database opened in January 2027: FUTURE starts in March."""
    storage = await PostgresStorage.open(postgres_url, now=NOW)
    await storage.close()
    async with postgres_connection(postgres_url) as connection:
        yield connection


async def _future_reads(db: asyncpg.Connection[asyncpg.Record]) -> tuple[int, ...]:
    """Scans of FUTURE so far: sequential, by index, and its pages (heap, index) read."""
    await db.execute("SELECT pg_stat_force_next_flush()")  # this session's counts, flushed
    await db.execute("SELECT pg_stat_clear_snapshot()")
    row = await db.fetchrow(
        "SELECT s.seq_scan, coalesce(s.idx_scan, 0),"
        " io.heap_blks_read + io.heap_blks_hit, coalesce(io.idx_blks_read + io.idx_blks_hit, 0)"
        " FROM pg_stat_user_tables s JOIN pg_statio_user_tables io USING (relid)"
        " WHERE relid = $1::regclass",
        FUTURE,
    )
    assert row is not None
    return tuple(int(value) for value in row)


async def _where(db: asyncpg.Connection[asyncpg.Record]) -> dict[int, tuple[str, float]]:
    """Every reading's id: its partition and its t."""
    rows = await db.fetch("SELECT id, tableoid::regclass::text, t FROM readings")
    return {int(row[0]): (str(row[1]), float(row[2])) for row in rows}


async def test_a_month_moves_out_of_readings_future_in_one_read_of_it(
    db: asyncpg.Connection[asyncpg.Record],
) -> None:
    """The defect: the move read all of FUTURE three times under the lock: a copy of the
    month's rows and their DELETE (each a whole read of FUTURE's (gateway, point, t) index
    here, sequential scans with 2,000,000 rows), then a CHECK constraint's validation: 292
    heap and 160 index page visits for a heap of 248 pages. Now the month's rows are found
    by FUTURE's own index on t and moved by one statement; ATTACH's proof that the rest fits
    the new bounds is the one scan."""
    march = month_start(REACHED)
    await db.execute(
        _insert(f"SELECT 'g1', i, 0, 'p', {STUCK!r} + i FROM generate_series(1, {JUNK}) i")
    )
    await db.execute(
        _insert(f"SELECT 'g1', i, 1, 'p', {march!r} + i FROM generate_series(1, {AHEAD}) i")
    )
    # Statistics as autovacuum keeps them, and no autovacuum reading pages while we count.
    await db.execute(f"ALTER TABLE {FUTURE} SET (autovacuum_enabled = false)")
    await db.execute(f"ANALYZE {FUTURE}")
    stored = await _where(db)
    pages = await db.fetchval(
        "SELECT pg_relation_size($1) / current_setting('block_size')::int", FUTURE
    )
    before = await _future_reads(db)

    # What PostgresStorage.open does once the clock is in March, on this connection: its
    # statistics are then flushed by _future_reads, not at a pooled backend's exit.
    await Partitions().ensure(db, {REACHED, next_month(REACHED)}, next_month(REACHED))

    after = await _future_reads(db)
    seq_scans, _, heap, index = (a - b for a, b in zip(after, before, strict=True))
    # One sequential scan, and otherwise a few page visits (index, heap) per row that moves:
    # no index read whole (an index scan counts each page it visits, a row's page each time).
    assert (seq_scans, heap + index <= pages + VISITS * AHEAD) == (1, True), (heap, index, pages)
    moved = {i: (partition_name(REACHED), t) for i, (_, t) in stored.items() if t < STUCK}
    kept = {i: (FUTURE, t) for i, (_, t) in stored.items() if t >= STUCK}
    assert await _where(db) == moved | kept  # ids, hence stream positions, kept
    bound = await db.fetchval(
        "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = $1", FUTURE
    )
    assert bound == f"FOR VALUES FROM ('{month_start(AFTER):.0f}') TO (MAXVALUE)"


async def test_readings_written_while_the_month_moves_are_each_stored_once(
    db: asyncpg.Connection[asyncpg.Record], postgres_url: str
) -> None:
    """Other sessions keep writing readings of the current month, of the month that moves and
    of 2099 while the clock reaches March: each is stored once, in the partition of its time,
    with the id it was given; none of the month's readings is left in FUTURE."""
    march = month_start(REACHED)
    await db.execute(
        _insert(f"SELECT 'g1', i, 0, 'p', {STUCK!r} + i FROM generate_series(1, {JUNK}) i")
    )
    await db.execute(
        _insert(f"SELECT 'g1', i, 1, 'p', {march!r} + i FROM generate_series(1, {AHEAD}) i")
    )
    first_write = asyncio.Event()
    moved = asyncio.Event()

    given: dict[int, tuple[str, float]] = {}

    async def write(gateway: str) -> int:
        """Small transactions of three readings each until the move is over, then one more."""
        writer = await asyncpg.connect(postgres_url)
        try:
            seq = 0
            while True:
                seq += 1
                times = (NOW + seq, march + 1000 + seq, STUCK + JUNK + seq)
                rows = " UNION ALL ".join(
                    f"SELECT '{gateway}', {seq}, {k}, 'p', {t!r}" for k, t in enumerate(times)
                )
                for row in await writer.fetch(_insert(rows) + " RETURNING id, t"):
                    given[int(row[0])] = (gateway, float(row[1]))
                first_write.set()
                if moved.is_set():
                    return seq
        finally:
            await writer.close()

    writers = [asyncio.create_task(write(f"w{n}")) for n in range(2)]
    await first_write.wait()
    storage = await PostgresStorage.open(postgres_url, now=march + 60)
    await storage.close()
    moved.set()
    written = await asyncio.gather(*writers)

    where = await _where(db)
    assert len(where) == JUNK + AHEAD + 3 * sum(written)
    assert {i: where[i][1] for i in given} == {i: t for i, (_, t) in given.items()}
    rows = await db.fetch("SELECT gateway, count(DISTINCT (point, t)) FROM readings GROUP BY 1")
    counts = {str(row[0]): int(row[1]) for row in rows}
    assert counts == {"g1": JUNK + AHEAD, "w0": 3 * written[0], "w1": 3 * written[1]}
    for partition, t in where.values():
        if month_start(REACHED) <= t < month_start(next_month(REACHED)):
            assert partition == partition_name(REACHED)
        elif t >= STUCK:
            assert partition == FUTURE


async def _by_t(db: asyncpg.Connection[asyncpg.Record]) -> list[tuple[bool, str]]:
    """FUTURE's index on t as the catalog has it: (valid, definition), or none."""
    rows = await db.fetch(
        "SELECT x.indisvalid, pg_get_indexdef(x.indexrelid) FROM pg_index x"
        " JOIN pg_class c ON c.oid = x.indexrelid WHERE c.relname = $1",
        FUTURE_INDEX,
    )
    return [(bool(row[0]), str(row[1])) for row in rows]


async def _fill(db: asyncpg.Connection[asyncpg.Record]) -> None:
    """JUNK readings of 2099 and AHEAD of March in FUTURE."""
    march = month_start(REACHED)
    await db.execute(
        _insert(f"SELECT 'g1', i, 0, 'p', {STUCK!r} + i FROM generate_series(1, {JUNK}) i")
    )
    await db.execute(
        _insert(f"SELECT 'g1', i, 1, 'p', {march!r} + i FROM generate_series(1, {AHEAD}) i")
    )


_BUILT: Final = f"CREATE INDEX {FUTURE_INDEX} ON public.{FUTURE} USING btree (t)"


async def test_a_future_partition_made_before_its_index_gets_it_at_open_not_in_the_move(
    db: asyncpg.Connection[asyncpg.Record], postgres_url: str
) -> None:
    """The defect: a `readings_future` made before its index (every one an earlier version
    made) got it from the first move, a plain CREATE INDEX under the ACCESS EXCLUSIVE lock on
    `readings` (2,000,000 readings of 2099: 1.4-2.0 s, ingest and queries waiting). Now the
    collector's open builds it CONCURRENTLY (no lock that stops writers), and the move builds
    no index: every DDL statement the move runs is noted by an event trigger."""
    await db.execute(f"DROP INDEX {FUTURE_INDEX}")  # as an earlier version made FUTURE
    await _fill(db)
    stored = await _where(db)
    storage = await PostgresStorage.open(postgres_url, now=NOW)  # the upgraded collector
    await storage.close()
    assert await _by_t(db) == [(True, _BUILT)]

    await db.execute("CREATE TABLE ddl_seen (tag text)")
    await db.execute(
        "CREATE FUNCTION note_ddl() RETURNS event_trigger LANGUAGE plpgsql"
        " AS $$ BEGIN INSERT INTO ddl_seen VALUES (tg_tag); END $$"
    )
    await db.execute(
        "CREATE EVENT TRIGGER note_ddl ON ddl_command_start EXECUTE FUNCTION note_ddl()"
    )
    await Partitions().ensure(db, {REACHED, next_month(REACHED)}, next_month(REACHED))
    seen = [str(row[0]) for row in await db.fetch("SELECT tag FROM ddl_seen")]
    assert "ALTER TABLE" in seen, seen  # the trigger saw the move's DDL
    assert "CREATE INDEX" not in seen, seen
    moved = {i: (partition_name(REACHED), t) for i, (_, t) in stored.items() if t < STUCK}
    kept = {i: (FUTURE, t) for i, (_, t) in stored.items() if t >= STUCK}
    assert await _where(db) == moved | kept


async def test_an_index_a_concurrent_build_left_invalid_is_built_again_at_open(
    db: asyncpg.Connection[asyncpg.Record], postgres_url: str
) -> None:
    """A concurrent build cut short (a collector killed during it, a failure) leaves the index
    in the catalog, INVALID: never used, yet `IF NOT EXISTS` takes it for made. The next open
    drops it and builds it again."""
    await db.execute(f"DROP INDEX {FUTURE_INDEX}")
    await _fill(db)
    with pytest.raises(asyncpg.UniqueViolationError):  # a build that fails half way
        await db.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {FUTURE_INDEX} ON {FUTURE} (gateway)")
    assert [valid for valid, _ in await _by_t(db)] == [False]
    storage = await PostgresStorage.open(postgres_url, now=NOW)
    await storage.close()
    assert await _by_t(db) == [(True, _BUILT)]


async def _wait_for_lock(db: asyncpg.Connection[asyncpg.Record], where: str) -> None:
    """Until a backend matching `where` (on pg_stat_activity) waits for a lock."""
    query = f"SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND {where}"
    while not await db.fetchval(query):
        await asyncio.sleep(0.01)  # a lock wait sends no notice: the catalog is asked again


async def test_a_move_during_the_build_at_open_ends_neither_the_open_nor_the_build(
    db: asyncpg.Connection[asyncpg.Record], postgres_url: str
) -> None:
    """Another collector's move while the open builds the index: the move holds `readings` and
    waits for FUTURE, which the build holds, and the build waits for the move's snapshot to
    end. PostgreSQL ends one of the two (deadlock detected); here the build. Before, the open
    failed with it (`schema upgrade failed ... deadlock detected`): a collector that did not
    start. Now the build starts again once the move is done."""
    await db.execute(f"DROP INDEX {FUTURE_INDEX}")
    await _fill(db)
    writer = await asyncpg.connect(postgres_url)  # an ingest the build waits for first
    # The move never looks for the deadlock itself (within its 5 s lock_timeout): the build does.
    mover = await asyncpg.connect(postgres_url, server_settings={"deadlock_timeout": "1min"})
    try:
        writing = writer.transaction()
        await writing.start()
        await writer.execute(_insert(f"SELECT 'w', 1, 0, 'p', {STUCK!r} - 1"))
        opening = asyncio.create_task(PostgresStorage.open(postgres_url, now=NOW))
        await _wait_for_lock(db, "application_name = 'ganzhi-collector'")
        horizon = next_month(REACHED)
        moving = asyncio.create_task(Partitions().ensure(mover, {REACHED, horizon}, horizon))
        await _wait_for_lock(db, f"pid = {mover.get_server_pid()}")
        await writing.commit()
        storage = await opening
        await storage.close()
        await moving
    finally:
        await writer.close()
        await mover.close()
    assert await _by_t(db) == [(True, _BUILT)]
    assert await db.fetchval(f"SELECT count(*) FROM {partition_name(REACHED)}") == AHEAD


async def test_two_collectors_opening_at_once_build_the_index_once_without_deadlock(
    db: asyncpg.Connection[asyncpg.Record], postgres_url: str
) -> None:
    """The defect (7ac8e9d): the open built the index holding the migration lock, and a
    concurrent build waits for every older snapshot, also that of a second collector waiting
    for that lock: a deadlock, PostgreSQL ended the build twice, the index was left INVALID
    (`future_partition_index_left_to_next_open`) on every start of more than one collector.
    Now the migration lock is given back before the build; a lock only tried, never waited
    for, lets one collector build while the other goes on."""
    await db.execute(f"DROP INDEX {FUTURE_INDEX}")
    await _fill(db)
    await db.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)  # both opens wait for it
    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
        " AND application_name = 'ganzhi-collector'"
    )
    opening = [asyncio.create_task(PostgresStorage.open(postgres_url, now=NOW))]
    while await db.fetchval(waiting) < 1:
        await asyncio.sleep(0.01)  # a lock wait sends no notice: the catalog is asked again
    opening.append(asyncio.create_task(PostgresStorage.open(postgres_url, now=NOW)))
    while await db.fetchval(waiting) < 2:
        await asyncio.sleep(0.01)
    with capture_logs() as logs:
        await db.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
        opened = await asyncio.gather(*opening, return_exceptions=True)
    for storage in opened:
        if isinstance(storage, PostgresStorage):
            await storage.close()
    # The second finds the index built, or being built (then logs that it left it).
    events = [entry["event"] for entry in logs if entry["event"].startswith("future_partition")]
    skipped = "future_partition_index_left_to_other"
    assert ([type(storage).__name__ for storage in opened], sorted(set(events) - {skipped})) == (
        ["PostgresStorage", "PostgresStorage"],
        ["future_partition_indexed"],
    )
    assert events.count("future_partition_indexed") == 1
    assert await _by_t(db) == [(True, _BUILT)]
