"""The SQLite schema's numbered upgrades: from version N to N + 1, one function each.

Each step adds only what is missing, so a file whose tables the step does not find gets them
whole from the schema (`collector.storage.sqlite.schema`) afterwards, in the same transaction.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final

import aiosqlite

from collector.storage.gap_records import drop_repeats
from collector.storage.rollup_split import SQLITE_SPLIT
from collector.storage.sqlite.rollups import FIRST_FILL, ROLLUP_TABLE

MOVE_ACTIVE: Final = (
    "UPDATE feed SET active = json_extract(payload, '$.active'),"
    " payload = json_remove(payload, '$.active')"
    " WHERE kind = 'alarm' AND json_type(payload, '$.active') IN ('true', 'false')"
)
"""An alarm row's `active` out of its payload into its column (PostgreSQL's VERSION_12)."""


async def _upgrade_to_2(db: aiosqlite.Connection) -> None:
    """Blocks learn their domain and mine code (filled from the stored bytes)."""
    if await _add_columns(db, "blocks", ("domain TEXT", "mine_code TEXT")):
        await db.execute(
            "UPDATE blocks SET domain = json_extract(CAST(payload AS TEXT), '$.domain'),"
            " mine_code = json_extract(CAST(payload AS TEXT), '$.mine_code')"
        )


async def _upgrade_to_3(db: aiosqlite.Connection) -> None:
    """Gap records keep the seq range and time span they declare (DESIGN 6)."""
    await _add_columns(db, "gaps", ("declared_epoch TEXT", "t_from REAL", "t_to REAL"))


async def _upgrade_to_4(db: aiosqlite.Connection) -> None:
    """Streams keep the seq ranges gap records declared lost (closed, never asked for)."""
    await _add_columns(db, "ingest_state", ("declared TEXT NOT NULL DEFAULT '[]'",))


async def _upgrade_to_5(db: aiosqlite.Connection) -> None:
    """Readings become unique per (gateway, point, t): earlier files may hold repeats.

    The lowest id (the first stored) of each key stays; the others are deleted, counted in
    one audit row per gateway, and `latest` is re-read from what stays. the schema then makes
    the series index unique.
    """
    if not await _table_exists(db, "readings"):
        return
    repeat = (
        "EXISTS (SELECT 1 FROM readings o WHERE o.gateway = r.gateway AND o.point = r.point"
        " AND o.t = r.t AND o.id < r.id)"
    )
    counts = await db.execute_fetchall(
        f"SELECT r.gateway, count(*) FROM readings r WHERE {repeat} GROUP BY r.gateway"
    )
    if not counts:
        await db.execute("DROP INDEX IF EXISTS readings_by_series")
        return
    await db.execute(f"DELETE FROM readings AS r WHERE {repeat}")
    await db.execute("DROP INDEX IF EXISTS readings_by_series")
    if await _table_exists(db, "latest"):
        await db.execute(
            "UPDATE latest SET (quota, value, unit, quality, flags) = (SELECT r.quota,"
            " r.value, r.unit, r.quality, r.flags FROM readings r WHERE r.gateway ="
            " latest.gateway AND r.point = latest.point AND r.t = latest.t)"
            " WHERE EXISTS (SELECT 1 FROM readings r WHERE r.gateway = latest.gateway"
            " AND r.point = latest.point AND r.t = latest.t)"
        )
    if await _table_exists(db, "audit"):
        await db.executemany(
            "INSERT INTO audit (at, gateway, topic, reason, detail, payload_hash)"
            " VALUES (?, ?, '', 'duplicate', ?, '')",
            [
                (
                    time.time(),
                    row[0],
                    (
                        f"schema upgrade: {row[1]} reading(s) of gateway {row[0]} repeated the"
                        " (point, t) of an earlier one and were removed; the first stays"
                    ),
                )
                for row in counts
            ],
        )


async def _upgrade_to_6(db: aiosqlite.Connection) -> None:
    """Blocks keep their `prev` (filled from the stored bytes); streams a conflict flag."""
    if await _add_columns(db, "blocks", ("prev TEXT",)):
        await db.execute(
            "UPDATE blocks SET prev = json_extract(CAST(payload AS TEXT), '$.prev')"
            " WHERE prev IS NULL"
        )
    await _add_columns(db, "ingest_state", ("conflict INTEGER NOT NULL DEFAULT 0",))


PRESENCE_REBUILD_WINDOW: Final = 60.0
"""The default offline_after: how long a stored block counts as a sign of life when schema 7
rebuilds presence from the blocks' arrival times."""


async def _upgrade_to_7(db: aiosqlite.Connection) -> None:
    """Meta points keep their poll period; presence is rebuilt from when blocks arrived.

    Status messages were never kept, so the blocks' arrival times are the only history: runs
    of blocks less than PRESENCE_REBUILD_WINDOW apart become one interval, live until the
    window after the run's last block. The feed journal starts empty (streams start at the
    newest reading).
    """
    await _add_columns(db, "point_meta", ("poll REAL",))
    if not await _table_exists(db, "blocks") or await _table_exists(db, "presence"):
        return
    await db.execute(
        "CREATE TABLE presence (id INTEGER PRIMARY KEY, gateway TEXT NOT NULL,"
        " since REAL NOT NULL, until REAL NOT NULL)"
    )
    await db.execute(
        "INSERT INTO presence (gateway, since, until)"
        " WITH signs AS (SELECT gateway, received_at AS t, received_at - lag(received_at)"
        " OVER (PARTITION BY gateway ORDER BY received_at) AS pause FROM blocks),"
        " runs AS (SELECT gateway, t, sum(CASE WHEN pause IS NULL OR pause > ? THEN 1"
        " ELSE 0 END) OVER (PARTITION BY gateway ORDER BY t ROWS UNBOUNDED PRECEDING)"
        " AS run FROM signs)"
        " SELECT gateway, min(t), max(t) + ? FROM runs GROUP BY gateway, run"
        " ORDER BY gateway, min(t)",
        (PRESENCE_REBUILD_WINDOW, PRESENCE_REBUILD_WINDOW),
    )


async def _upgrade_to_8(db: aiosqlite.Connection) -> None:
    """Per-minute rollups (collector.storage.rollups), filled once from the stored readings."""
    if not await _table_exists(db, "readings") or await _table_exists(db, "readings_1m"):
        return
    await db.execute(ROLLUP_TABLE)
    await db.execute(FIRST_FILL)


async def _upgrade_to_9(db: aiosqlite.Connection) -> None:
    """Readings: no (gateway, epoch, seq, idx) index, ids never reused; a rebuild, ids kept.

    AUTOINCREMENT: retention may delete the rows with the highest ids, and a reused id would
    move live streams' positions backwards.

    SQLite cannot drop the index of a table constraint, so the table is copied once (time
    and space in proportion to the readings stored).
    """
    if not await _table_exists(db, "readings"):
        return
    columns = "id, gateway, epoch, seq, idx, point, quota, t, value, unit, quality, flags"
    await db.execute(
        "CREATE TABLE readings_9 (id INTEGER PRIMARY KEY AUTOINCREMENT, gateway TEXT NOT NULL,"
        " epoch TEXT NOT NULL, seq INTEGER NOT NULL, idx INTEGER NOT NULL,"
        " point TEXT NOT NULL, quota TEXT NOT NULL, t REAL NOT NULL, value REAL,"
        " unit TEXT NOT NULL, quality TEXT NOT NULL, flags TEXT NOT NULL)"
    )
    await db.execute(f"INSERT INTO readings_9 ({columns}) SELECT {columns} FROM readings")
    await db.execute("DROP TABLE readings")
    await db.execute("ALTER TABLE readings_9 RENAME TO readings")
    # readings_by_series went with the old table; the schema script makes it again.


_AUDIT_KINDS: Final = "('rejection', 'admin', 'command')"


async def _upgrade_to_10(db: aiosqlite.Connection) -> None:
    """The audit trail becomes a hash chain of aggregated rows; API tokens stored hashed.

    Rows already there stay as they are, open (unchained, minute NULL): the first seal after
    the upgrade chains them in id order. The new tables and indexes come from the schema.
    """
    await _add_columns(
        db,
        "audit",
        (
            f"kind TEXT NOT NULL DEFAULT 'rejection' CHECK (kind IN {_AUDIT_KINDS})",
            "source TEXT NOT NULL DEFAULT ''",
            "minute REAL",
            "count INTEGER NOT NULL DEFAULT 1",
            "last_at REAL",
            "chain_seq INTEGER",
            "prev TEXT",
            "hash TEXT",
        ),
    )


async def _upgrade_to_11(db: aiosqlite.Connection) -> None:
    """Gateway keys keep their lifecycle: retirement by rotation, and who announced them."""
    await _add_columns(
        db,
        "gateway_keys",
        ("retired_at REAL", "announced_by TEXT", "announced_epoch TEXT", "announced_seq INTEGER"),
    )


async def _upgrade_to_12(db: aiosqlite.Connection) -> None:
    """Blocks go with their readings' month: each keeps its age, each epoch what went.

    A block stored before knows only its arrival (`newest_t` = received_at; its readings'
    times are in its payload): a gateway's clock ahead of the collector's at the time then
    leaves readings of a kept month whose block retention deleted.
    """
    if await _add_columns(db, "blocks", ("newest_t REAL",)):
        await db.execute("UPDATE blocks SET newest_t = received_at WHERE newest_t IS NULL")
    await _add_columns(db, "ingest_state", ("pruned_through INTEGER NOT NULL DEFAULT 0",))


async def _upgrade_to_13(db: aiosqlite.Connection) -> None:
    """Retention marks where it deleted raw readings (`retention_state`, from the schema).

    Nothing to fill: a file pruned before does not say where, and the next retention pass
    (`serve` runs one at start) sets the mark. A collector of schema 12 must not open the
    file afterwards: it would store readings of a pruned month again.
    """
    del db


async def _upgrade_to_14(db: aiosqlite.Connection) -> None:
    """Gap records stored again by an earlier collector go: the first of each stays.

    Ingest stores a gap record sealed again in another block once (55ccbb1); the repeats an
    earlier version stored were still listed by GET /v1/gaps and counted. No index: see
    `collector.storage.gap_records.drop_repeats`.
    """
    if not await _table_exists(db, "gaps"):
        return
    audit, delete = drop_repeats("?")
    if await _table_exists(db, "audit"):
        await db.execute(audit, (time.time(),))
    await db.execute(delete)


async def _upgrade_to_15(db: aiosqlite.Connection) -> None:
    """Alarms mark a raise or clear stamped ahead of the collector's clock.

    Alarms stored before are taken as not ahead: their blocks' arrival is not looked up again.
    """
    await _add_columns(
        db,
        "alarms",
        ("raise_ahead INTEGER NOT NULL DEFAULT 0", "clear_ahead INTEGER NOT NULL DEFAULT 0"),
    )


async def _upgrade_to_16(db: aiosqlite.Connection) -> None:
    """An alarm row's `active` gets a column; the rows that kept it in their payload move it.

    6f577c0 wrote it into the payload, where every collector before it failed to read the row
    (it builds the event from every key). Moved, a rollback past this schema (operations.md,
    Upgrading) leaves payloads such a collector reads.
    """
    if await _add_columns(db, "feed", ("active INTEGER",)):
        await db.execute(MOVE_ACTIVE)


async def _upgrade_to_17(db: aiosqlite.Connection) -> None:
    """Rollups keyed by (gateway, point, minute, quota, unit); mixed minutes rolled up again.

    SQLite cannot change a primary key: the table is copied once (its rows are few beside the
    readings), then the minutes whose raw readings hold two labels are rebuilt from them
    (collector.storage.rollup_split).
    """
    if not await _table_exists(db, "readings_1m"):
        return
    await db.execute("ALTER TABLE readings_1m RENAME TO readings_1m_16")
    await db.execute(ROLLUP_TABLE)
    await db.execute("INSERT INTO readings_1m SELECT * FROM readings_1m_16")
    await db.execute("DROP TABLE readings_1m_16")
    for statement in SQLITE_SPLIT:
        await db.execute(statement)


UPGRADES: Final = {
    1: _upgrade_to_2,
    2: _upgrade_to_3,
    3: _upgrade_to_4,
    4: _upgrade_to_5,
    5: _upgrade_to_6,
    6: _upgrade_to_7,
    7: _upgrade_to_8,
    8: _upgrade_to_9,
    9: _upgrade_to_10,
    10: _upgrade_to_11,
    11: _upgrade_to_12,
    12: _upgrade_to_13,
    13: _upgrade_to_14,
    14: _upgrade_to_15,
    15: _upgrade_to_16,
    16: _upgrade_to_17,
}


async def _table_exists(db: aiosqlite.Connection, table: str) -> bool:
    rows = await db.execute_fetchall(f"PRAGMA table_info({table})")
    return bool(list(rows))


async def _add_columns(db: aiosqlite.Connection, table: str, columns: Sequence[str]) -> bool:
    """Add the columns (`name TYPE`) `table` lacks; False when there is no such table."""
    rows = await db.execute_fetchall(f"PRAGMA table_info({table})")
    present = {str(row[1]) for row in rows}
    if not present:
        return False
    for column in columns:
        if column.split()[0] not in present:
            await db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
    return True
