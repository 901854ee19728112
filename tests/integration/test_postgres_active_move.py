"""PostgreSQL migration 12 holds `feed` for an instant; the payloads move after it, in batches.

Migration 12 first added the column and moved `active` out of every alarm payload in one
UPDATE in its transaction: the ACCESS EXCLUSIVE lock of the ALTER lasted the whole rewrite
(15 s for 1,000,000 alarm rows; a `SELECT max(id) FROM feed` with lock_timeout 1s failed), so
older collectors' ingest and streams stalled during a rolling upgrade. Now the migration only
adds the column and `schema.migrate` moves the payloads afterwards, each batch of ids in a
transaction of its own; idempotent with two collectors doing it at once. Real PostgreSQL.
"""

from __future__ import annotations

import asyncio
from typing import Final

import asyncpg
import pytest

from collector.storage import open_storage, upgrade_storage
from collector.storage.postgres.active_move import MOVE_BATCH, move_active, moved_through
from collector.storage.postgres.schema import MIGRATIONS, SCHEMA_VERSION
from tests.support.collector_api import NANCHANG
from tests.support.collector_env import register
from tests.support.postgres import postgres_connection, sql_execute, sql_rows

ROWS: Final = 2 * MOVE_BATCH + 7
"""Alarm rows keeping `active` in their payload: three batches."""

ROLLBACK_PAST_12: Final = """
UPDATE feed SET payload = (payload::jsonb - 'active')::text
    WHERE kind = 'alarm' AND strpos(payload, '"active"') > 0;
ALTER TABLE feed DROP COLUMN active;
DELETE FROM schema_migrations WHERE version = 12;
"""
"""docs/operations.md's rollback past migration 12, as written there."""

_STILL_IN_PAYLOAD: Final = "SELECT count(*) FROM feed WHERE strpos(payload, '\"active\"') > 0"


async def _journal_as_6f577c0_left_it(url: str) -> None:
    """Migration 11's schema, ROWS alarm rows with `active` in the payload (even ids true),
    one status row whose payload names "active" (not an alarm's: left as it is)."""
    async with open_storage(url) as storage:
        await register(storage, NANCHANG)
    await sql_execute(url, "ALTER TABLE feed DROP COLUMN active")
    await sql_execute(url, "DELETE FROM schema_migrations WHERE version >= 12")
    await sql_execute(
        url,
        "INSERT INTO feed (kind, gateway, point, readings_through, payload, at)"
        " SELECT 'alarm', ?, 'p/' || n, 0,"
        " json_build_object('alarm_id', 'p/' || n, 'active', n % 2 = 0)::text, n"
        " FROM generate_series(1, ?) AS n",
        NANCHANG.gateway,
        ROWS,
    )
    await sql_execute(
        url,
        "INSERT INTO feed (kind, gateway, point, readings_through, payload, at)"
        " VALUES ('status', ?, NULL, 0, '{\"active\": true}', 0)",
        NANCHANG.gateway,
    )


async def _assert_moved(url: str) -> None:
    assert await sql_rows(url, _STILL_IN_PAYLOAD) == [(1,)]  # the status row's
    rows = await sql_rows(
        url, "SELECT at::int % 2 = 0, active, count(*) FROM feed WHERE kind = 'alarm' GROUP BY 1, 2"
    )
    assert sorted(rows) == [(False, False, ROWS - ROWS // 2), (True, True, ROWS // 2)]


async def test_migration_12_rewrites_no_row_under_its_exclusive_lock(postgres_url: str) -> None:
    """The defect: migration 12's transaction updated every alarm row keeping `active` while
    its ALTER held `feed` ACCESS EXCLUSIVE (here ROWS rows updated; now none)."""
    await _journal_as_6f577c0_left_it(postgres_url)
    file = "SELECT relfilenode FROM pg_class WHERE relname = 'feed'"
    async with postgres_connection(postgres_url) as db:
        before = await db.fetchval(file)
        async with db.transaction():
            await db.execute(MIGRATIONS[11].sql)
            updated = await db.fetchval(
                "SELECT n_tup_upd FROM pg_stat_xact_user_tables WHERE relname = 'feed'"
            )
            rewritten = await db.fetchval(file) != before
    assert (updated, rewritten) == (0, False)


async def test_the_payloads_move_at_open_in_transactions_of_a_batch(postgres_url: str) -> None:
    """After the upgrade no alarm payload keeps `active` (an older collector rolled back reads
    every row), each row's value in the column, moved by several transactions, not one."""
    await _journal_as_6f577c0_left_it(postgres_url)
    before, after = await upgrade_storage(postgres_url)
    assert (before, after) == (11, SCHEMA_VERSION)  # 12 moves `active`; later ones run too
    await _assert_moved(postgres_url)
    transactions = await sql_rows(
        postgres_url, "SELECT count(DISTINCT xmin::text) FROM feed WHERE kind = 'alarm'"
    )
    assert transactions == [(3,)]
    # A row a 6f577c0 collector still running writes after the move; the rollback of
    # docs/operations.md (Upgrading) strips it too, so the older collector reads every row.
    await sql_execute(
        postgres_url,
        "INSERT INTO feed (kind, gateway, point, readings_through, payload, at)"
        " VALUES ('alarm', ?, 'late/1', 0, '{\"alarm_id\": \"late/1\", \"active\": true}', 0)",
        NANCHANG.gateway,
    )
    async with postgres_connection(postgres_url) as db, db.transaction():
        await db.execute(ROLLBACK_PAST_12)
    assert await sql_rows(postgres_url, _STILL_IN_PAYLOAD + " AND kind = 'alarm'") == [(0,)]


async def test_two_collectors_moving_at_once_move_each_row_once(postgres_url: str) -> None:
    """Two opens at once (the migration lock orders them), then two moves without it: every
    row moved, once, with its own value; a third finds nothing left."""
    await _journal_as_6f577c0_left_it(postgres_url)
    await asyncio.gather(upgrade_storage(postgres_url), upgrade_storage(postgres_url))
    await _assert_moved(postgres_url)
    await sql_execute(
        postgres_url,
        "UPDATE feed SET payload = json_build_object('alarm_id', point, 'active', active)::text,"
        " active = NULL WHERE kind = 'alarm'",
    )
    await sql_execute(postgres_url, "COMMENT ON COLUMN feed.active IS NULL")  # not moved yet
    first, second = await asyncio.gather(*(_move(postgres_url) for _ in range(2)))
    assert first + second == ROWS
    await _assert_moved(postgres_url)
    assert await _move(postgres_url) == 0


async def _move(url: str) -> int:
    async with postgres_connection(url) as db:
        return await move_active(db)


async def _marked(url: str) -> int:
    async with postgres_connection(url) as db:
        return await moved_through(db)


async def test_a_finished_move_is_not_walked_again(postgres_url: str) -> None:
    """The defect: no mark of a finished move, so every open walked the whole journal in
    batches under the migration lock (alarm rows from before `active` match `active IS NULL`
    for good). Now the second open runs no batch: no statement rewrites a row, the mark is
    max(id); a late payload row above the mark is moved by the next open, and only it."""
    await _journal_as_6f577c0_left_it(postgres_url)
    # Rows written before `active` existed: no `active` in payload or column.
    await sql_execute(
        postgres_url,
        "INSERT INTO feed (kind, gateway, point, readings_through, payload, at)"
        " SELECT 'alarm', ?, 'old/' || n, 0, json_build_object('alarm_id', n)::text, n"
        " FROM generate_series(1, ?) AS n",
        NANCHANG.gateway,
        MOVE_BATCH,
    )
    await upgrade_storage(postgres_url)
    top = (await sql_rows(postgres_url, "SELECT max(id) FROM feed"))[0][0]
    assert await _marked(postgres_url) == top
    assert await _move(postgres_url) == 0
    # No batch ran: no UPDATE sent, no row version changed.
    versions = "SELECT count(DISTINCT xmin::text) FROM feed"
    before = await sql_rows(postgres_url, versions)
    batches: list[str] = []
    async with postgres_connection(postgres_url) as db:
        db.add_query_logger(lambda record: batches.append(record.query))
        assert await move_active(db) == 0
    assert [query for query in batches if query.startswith("UPDATE feed")] == []
    assert await sql_rows(postgres_url, versions) == before
    await sql_execute(
        postgres_url,
        "INSERT INTO feed (kind, gateway, point, readings_through, payload, at)"
        " VALUES ('alarm', ?, 'late/1', 0, '{\"alarm_id\": \"late/1\", \"active\": true}', 0)",
        NANCHANG.gateway,
    )
    assert await _move(postgres_url) == 1
    assert await _marked(postgres_url) == top + 1
    assert await sql_rows(postgres_url, "SELECT active FROM feed WHERE point = 'late/1'") == [
        (True,)
    ]


async def test_a_move_cut_short_resumes_where_it_stopped(postgres_url: str) -> None:
    """A move failing in its second batch (a trigger raising: the connection lost there):
    the next move runs the second and third batches only, not the first again."""
    await _journal_as_6f577c0_left_it(postgres_url)
    await sql_execute(postgres_url, "ALTER TABLE feed ADD COLUMN active boolean")
    await sql_execute(
        postgres_url,
        "CREATE FUNCTION cut_short() RETURNS trigger LANGUAGE plpgsql AS"
        " $$BEGIN RAISE EXCEPTION 'cut short'; END$$",
    )
    await sql_execute(
        postgres_url,
        f"CREATE TRIGGER cut BEFORE UPDATE ON feed FOR EACH ROW WHEN (OLD.id > {MOVE_BATCH})"
        " EXECUTE FUNCTION cut_short()",
    )
    async with postgres_connection(postgres_url) as db:
        with pytest.raises(asyncpg.RaiseError):
            await move_active(db)
    assert await _marked(postgres_url) == MOVE_BATCH
    await sql_execute(postgres_url, "DROP TRIGGER cut ON feed")
    updates: list[str] = []
    async with postgres_connection(postgres_url) as db:
        db.add_query_logger(lambda record: updates.append(record.query))
        moved = await move_active(db)
    assert len([query for query in updates if query.startswith("UPDATE feed")]) == 2
    first_batch = await sql_rows(
        postgres_url, "SELECT count(*) FROM feed WHERE id <= ? AND kind = 'alarm'", MOVE_BATCH
    )
    assert moved == ROWS - first_batch[0][0]
    await _assert_moved(postgres_url)
