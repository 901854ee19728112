"""SQLite's schema 17 rebuild of the mixed minutes seeks; it does not scan per row.

It deleted the mixed minutes' rollups with a correlated `EXISTS` over split_minutes, a full
scan of split_minutes per rollup row, and read each mixed minute's readings through
readings_by_series on (gateway, point) only, the minute a filter: on 846,720 readings with
8,064 mixed minutes the open took 186 s (160 s in the DELETE). The plans say which: the
DELETE must not be correlated, and the readings must be sought by (gateway, point, t).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from collector.storage.rollup_split import SQLITE_SPLIT
from collector.storage.sqlite.store import SqliteStorage

START = 1793491200.0


def _plan(db: sqlite3.Connection, statement: str) -> str:
    """EXPLAIN QUERY PLAN's details, one a line."""
    return "\n".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {statement}"))


async def test_the_split_deletes_and_reads_by_key(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    await (await SqliteStorage.open(path)).close()
    db = sqlite3.connect(path)
    db.executemany(
        "INSERT INTO readings (gateway, epoch, seq, idx, point, quota, t, value, unit,"
        " quality, flags) VALUES ('G', 'e', 1, ?, ?, ?, ?, 1.0, ?, 'good', '[]')",
        [
            (i, point, *(("WHP-PT", START + i, "MPa") if i % 2 else ("WHP-LT", START + i, "m")))
            for point in ("P1", "P2")
            for i in range(0, 600, 7)
        ],
    )
    create, *keyed, delete, insert, drop = SQLITE_SPLIT
    assert drop == "DROP TABLE split_minutes"
    for statement in (create, *keyed):
        db.execute(statement)
    assert db.execute("SELECT count(*) FROM split_minutes").fetchone() == (20,)
    delete_plan, insert_plan = _plan(db, delete), _plan(db, insert)
    db.close()
    assert "CORRELATED" not in delete_plan, delete_plan
    assert (
        "SEARCH r USING INDEX readings_by_series (gateway=? AND point=? AND t>? AND t<?)"
        in insert_plan
    ), insert_plan
