"""SQLite schema upgrades: a collector file from before normalization opens and keeps its data."""

from __future__ import annotations

import sqlite3
from collections.abc import MutableMapping
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from collector.config import load_collector_config
from collector.runtime import run_collector
from collector.storage import open_storage
from collector.storage.base import StorageError
from collector.storage.sqlite import SCHEMA_VERSION, SqliteStorage
from hostkit.keyfiles import create_key_pair
from specs.block import GENESIS
from tests.support.broker import Broker, free_port
from tests.support.collector_client import coal_gateway
from tests.support.collector_env import write_collector_config
from tests.support.postgres import sqlite_file

MINE = coal_gateway()

# The two tables of schema 1 that schema 2 reads; the others are created by the upgrade.
_SCHEMA_1 = """
CREATE TABLE blocks (
    gateway TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL, payload BLOB NOT NULL,
    alg TEXT NOT NULL, kid TEXT NOT NULL, sig BLOB NOT NULL, hash TEXT NOT NULL,
    received_at REAL NOT NULL, PRIMARY KEY (gateway, epoch, seq)
);
CREATE TABLE ingest_state (
    gateway TEXT NOT NULL, epoch TEXT NOT NULL, acked_through INTEGER NOT NULL,
    max_seq INTEGER NOT NULL, missing TEXT NOT NULL, first_seen REAL NOT NULL,
    last_seen REAL NOT NULL, PRIMARY KEY (gateway, epoch)
);
PRAGMA user_version = 1;
"""


def _schema_1_file(path: Path) -> None:
    payload = MINE.block(1)
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA_1)
        db.execute(
            "INSERT INTO blocks VALUES (?, 'epoch-1', 1, ?, 'ed25519', 'k', x'00', 'h', 1.0)",
            (MINE.gateway, payload),
        )
        db.execute(
            "INSERT INTO ingest_state VALUES (?, 'epoch-1', 1, 1, '[]', 1.0, 1.0)", (MINE.gateway,)
        )
    db.close()


async def test_a_schema_1_file_is_upgraded_and_its_blocks_learn_their_mine(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    _schema_1_file(path)
    for _ in range(2):  # the second open finds the file current and changes nothing
        async with open_storage(f"sqlite:///{path}") as storage:
            profile = await storage.gateway_profile(MINE.gateway)
            assert profile is not None
            assert (profile.domain, profile.mine_code) == ("MK", MINE.mine_code)
            assert await storage.point_metas(MINE.gateway) == {}
            state = await storage.stream(MINE.gateway, "epoch-1")
            assert state is not None
            assert (state.acked_through, state.declared) == (1, ())
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert db.execute("SELECT count(*) FROM alarms").fetchone() == (0,)
        # Blocks learnt their prev from the stored bytes; streams start without conflict.
        assert db.execute("SELECT prev FROM blocks").fetchall() == [(GENESIS,)]
        assert db.execute("SELECT conflict FROM ingest_state").fetchall() == [(0,)]
    db.close()


# The gaps table of schema 2, with a gap record of the old vocabulary in it.
_SCHEMA_2_GAPS = """
CREATE TABLE gaps (
    id INTEGER PRIMARY KEY, gateway TEXT NOT NULL, epoch TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('record', 'sequence')), seq INTEGER, idx INTEGER,
    from_seq INTEGER, to_seq INTEGER, t REAL, reason TEXT NOT NULL, lost INTEGER, point TEXT,
    detected_at REAL NOT NULL
);
INSERT INTO gaps (gateway, epoch, kind, seq, idx, t, reason, lost, point, detected_at)
VALUES ('gw', 'epoch-1', 'record', 1, 3, 5.0, 'device_unreachable', 2, 'P-1', 6.0);
PRAGMA user_version = 2;
"""


async def test_a_schema_2_file_keeps_its_gap_records_and_learns_declared_ranges(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v2.db"
    async with open_storage(sqlite_file(path, _SCHEMA_2_GAPS)):
        pass
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        rows = db.execute(
            "SELECT reason, lost, point, declared_epoch, from_seq, to_seq, t_from, t_to FROM gaps"
        ).fetchall()
    db.close()
    assert rows == [("device_unreachable", 2, "P-1", None, None, None, None, None)]


async def test_a_newer_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StorageError, match="newer"):
        async with open_storage(f"sqlite:///{path}"):
            pass


async def test_a_file_at_a_version_below_0_is_refused(tmp_path: Path) -> None:
    """Found by a hostile tester: user_version -1 (no collector writes one) ended in a KeyError
    traceback from the upgrade steps, in `db upgrade` and every other command."""
    path = tmp_path / "odd.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = -1")
    db.close()
    with pytest.raises(StorageError, match="database schema -1 is no collector's"):
        async with open_storage(f"sqlite:///{path}"):
            pass


async def test_another_programs_database_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    """`storage.url` pointed at another program's SQLite file (tables, user_version 0): the
    collector took it for a new file, set WAL and created its whole schema among the other
    tables. Refused now, naming the file, before anything is written in it."""
    path = tmp_path / "historian.db"
    url = sqlite_file(path, "CREATE TABLE tags (name TEXT PRIMARY KEY, value REAL);")
    before = path.read_bytes()
    with pytest.raises(StorageError, match=f"^cannot open database {path}: .*tags"):
        async with open_storage(url):
            pass
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["historian.db"]


async def test_an_empty_file_or_a_database_without_tables_is_a_new_one(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    bare = tmp_path / "bare.db"
    sqlite_file(bare, "CREATE TABLE gone (x); DROP TABLE gone;")
    assert bare.stat().st_size > 0
    for path in (empty, bare):
        async with open_storage(f"sqlite:///{path}"):
            pass
        with closing(sqlite3.connect(path)) as db:
            assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


async def test_schema_9_drops_the_block_index_of_readings_and_keeps_every_row(
    tmp_path: Path,
) -> None:
    path = tmp_path / "collector.db"
    async with open_storage(f"sqlite:///{path}"):
        pass  # a current file, turned back into a schema-8 one below
    with sqlite3.connect(path) as db:
        db.executescript(
            "DROP TABLE readings;"
            "CREATE TABLE readings (id INTEGER PRIMARY KEY, gateway TEXT NOT NULL,"
            " epoch TEXT NOT NULL, seq INTEGER NOT NULL, idx INTEGER NOT NULL,"
            " point TEXT NOT NULL, quota TEXT NOT NULL, t REAL NOT NULL, value REAL,"
            " unit TEXT NOT NULL, quality TEXT NOT NULL, flags TEXT NOT NULL,"
            " UNIQUE (gateway, epoch, seq, idx));"
            "CREATE UNIQUE INDEX readings_by_series ON readings (gateway, point, t);"
            "PRAGMA user_version = 8;"
        )
        rows = [
            (7, "G", "e", 1, 0, "P-1", "WHP-LT", 10.0, 1.5, "m", "good", "[]"),
            (9, "G", "e", 1, 1, "P-2", "WHP-LT", 10.0, None, "m", "bad", '["x"]'),
        ]
        db.executemany(f"INSERT INTO readings VALUES ({', '.join('?' * 12)})", rows)
    db.close()
    async with open_storage(f"sqlite:///{path}"):
        pass
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        indexes = {row[1]: row[2] for row in db.execute("PRAGMA index_list(readings)")}
        assert indexes == {"readings_by_series": 1}
        assert db.execute("SELECT * FROM readings ORDER BY id").fetchall() == rows
    db.close()


def _built(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [line for line in logs if line["event"] == "index_built"]


async def test_an_index_made_on_open_is_built_alone_and_serve_logs_it(
    tmp_path: Path, broker: Broker
) -> None:
    """Found in a review of fe456c0: gaps_by_record_time, made on opening a file of any schema
    version, was built inside the open's upgrade transaction, and nothing said so: the first
    start after the upgrade held the write lock for the whole build (12M gap rows: 23 s; a
    `db prune` waiting its 10 s failed "database is locked") with no line saying why. Each
    index made on open is now built in a transaction of its own once the upgrade has
    committed, and `serve` logs `index_built` with its duration. A new file, its tables empty,
    gets them with its schema; an open that finds them builds nothing."""
    path = tmp_path / "collector.db"
    url = f"sqlite:///{path}"
    async with open_storage(url) as fresh:
        assert isinstance(fresh, SqliteStorage)
        assert fresh.indexes_built == ()
    with closing(sqlite3.connect(path)) as db:  # a file from before fe456c0
        db.execute("DROP INDEX gaps_by_record_time")
        db.commit()
    config_path = write_collector_config(
        tmp_path, broker_port=broker.port, api_port=free_port(), storage_url=url
    )
    create_key_pair(tmp_path / "keys" / "collector.key")
    with capture_logs() as logs:
        async with run_collector(load_collector_config(config_path)):
            pass
    (line,) = _built(logs)
    assert (line["index"], line["log_level"]) == ("gaps_by_record_time", "info")
    assert isinstance(line["seconds"], float)
    async with open_storage(url) as again:
        assert isinstance(again, SqliteStorage)
        assert again.indexes_built == ()
    with closing(sqlite3.connect(path)) as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"gaps_by_hole", "gaps_by_record_time"} <= names
