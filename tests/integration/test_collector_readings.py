"""One reading per (gateway, point, t), through a real Mosquitto into SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from collector.model import Reason
from collector.readmodel import EVERYTHING
from collector.storage import open_storage
from collector.storage.sqlite import SCHEMA_VERSION
from specs.records import Quality, Reading, iso_time
from tests.support.collector_client import BASE_TIME
from tests.support.collector_env import CollectorEnv, wait_until
from tests.support.postgres import sqlite_file


def _level(second: float, value: float, quality: Quality = Quality.GOOD) -> Reading:
    return Reading("T001-LT-01", "WHP-LT", iso_time(BASE_TIME + second), value, "m", quality)


def _db(path: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        rows = db.execute(query).fetchall()
    db.close()
    return rows


async def test_a_repeated_reading_is_stored_once_and_audited_as_duplicate_or_conflict(
    env: CollectorEnv,
) -> None:
    await env.link.send(1, records=[_level(0, 8.5), _level(1, 8.6)])
    await env.ack()
    # A resealed backlog in a new epoch: (point, t) of stored readings, one of them changed.
    resealed = [_level(0, 8.5), _level(1, 9.9), _level(2, 8.7)]
    await env.link.send(1, epoch="epoch-2", records=resealed)
    ack = await env.ack()
    assert (ack.epoch, ack.acked_through) == ("epoch-2", 1)  # the block itself is stored
    assert await env.rows("SELECT epoch, seq, idx, t, value FROM readings ORDER BY t") == [
        ("epoch-1", 1, 0, BASE_TIME, 8.5),
        ("epoch-1", 1, 1, BASE_TIME + 1, 8.6),
        ("epoch-2", 1, 2, BASE_TIME + 2, 8.7),
    ]
    (duplicate,) = await env.audited(Reason.DUPLICATE)
    (conflict,) = await env.audited(Reason.CONFLICT)
    assert "epoch epoch-2 seq 1: 1 reading(s)" in duplicate.detail
    assert f"T001-LT-01@{iso_time(BASE_TIME)}" in duplicate.detail
    assert f"T001-LT-01@{iso_time(BASE_TIME + 1)}" in conflict.detail
    assert duplicate.payload_hash == conflict.payload_hash
    latest = await env.storage.latest(
        EVERYTHING, enterprise=None, gateway=None, after=None, limit=10
    )
    assert [(r.t, r.value) for r in latest.items] == [(BASE_TIME + 2, 8.7)]


async def test_repeats_within_one_block_keep_the_first(env: CollectorEnv) -> None:
    await env.link.send(1, records=[_level(0, 1.0), _level(0, 1.0), _level(0, 2.0, Quality.BAD)])
    await env.ack()
    assert await env.rows("SELECT idx, value FROM readings") == [(0, 1.0)]
    assert len(await env.audited(Reason.CONFLICT)) == 1
    assert len(await env.audited(Reason.DUPLICATE)) == 1


async def test_a_resealed_backlog_counts_one_audit_occurrence_per_block_not_per_reading(
    env: CollectorEnv,
) -> None:
    """Two blocks of repeats are two occurrences, aggregated in one row of their minute."""
    backlog = [_level(i / 100, 1.0 + i) for i in range(2000)]
    await env.link.send(1, records=backlog[:1000])
    await env.link.send(2, records=backlog[1000:])
    await env.ack()
    await env.ack()
    await env.link.send(1, epoch="epoch-2", records=backlog[:1000])
    await env.link.send(2, epoch="epoch-2", records=backlog[1000:])
    await env.ack()
    await env.ack()
    rows = await wait_until(
        lambda: env.storage.audit(reason=Reason.DUPLICATE),
        lambda r: sum(row.count for row in r) == 2,
    )
    assert all(": 1000 reading(s)" in row.detail for row in rows)
    assert await env.rows("SELECT count(*) FROM readings") == [(2000,)]


# --- a SQLite file from before readings were unique ---------------------------------------------

_SCHEMA_4_READINGS = """
CREATE TABLE readings (
    id INTEGER PRIMARY KEY, gateway TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
    idx INTEGER NOT NULL, point TEXT NOT NULL, quota TEXT NOT NULL, t REAL NOT NULL, value REAL,
    unit TEXT NOT NULL, quality TEXT NOT NULL, flags TEXT NOT NULL,
    UNIQUE (gateway, epoch, seq, idx)
);
CREATE INDEX readings_by_series ON readings (gateway, point, t);
CREATE TABLE latest (
    gateway TEXT NOT NULL, point TEXT NOT NULL, quota TEXT NOT NULL, t REAL NOT NULL, value REAL,
    unit TEXT NOT NULL, quality TEXT NOT NULL, flags TEXT NOT NULL, PRIMARY KEY (gateway, point)
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, gateway TEXT, topic TEXT NOT NULL,
    reason TEXT NOT NULL, detail TEXT NOT NULL, payload_hash TEXT NOT NULL
);
INSERT INTO readings VALUES (1, 'gw', 'e1', 1, 0, 'P', 'WHP-LT', 5.0, 1.0, 'm', 'good', '[]');
INSERT INTO readings VALUES (2, 'gw', 'e1', 1, 1, 'Q', 'WHP-LT', 5.0, 3.0, 'm', 'good', '[]');
INSERT INTO readings VALUES (3, 'gw', 'e2', 1, 0, 'P', 'WHP-LT', 5.0, 2.0, 'm', 'good', '[]');
INSERT INTO readings VALUES (4, 'gw', 'e2', 2, 0, 'P', 'WHP-LT', 5.0, 1.0, 'm', 'good', '[]');
INSERT INTO latest VALUES ('gw', 'P', 'WHP-LT', 5.0, 2.0, 'm', 'good', '[]');
PRAGMA user_version = 4;
"""


async def test_an_old_file_with_repeated_readings_keeps_the_first_and_becomes_unique(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v4.db"
    async with open_storage(sqlite_file(path, _SCHEMA_4_READINGS)) as storage:
        (row,) = await storage.audit(reason=Reason.DUPLICATE)
        assert "2 reading(s) of gateway gw" in row.detail
    assert _db(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert _db(path, "SELECT id, point, value FROM readings ORDER BY id") == [
        (1, "P", 1.0),
        (2, "Q", 3.0),
    ]
    assert _db(path, "SELECT value FROM latest") == [(1.0,)]  # re-read from the one that stays
    with sqlite3.connect(path) as db, pytest.raises(sqlite3.IntegrityError):
        db.execute(
            "INSERT INTO readings VALUES (9, 'gw', 'e3', 1, 0, 'P', 'WHP-LT', 5.0, 1.0, 'm',"
            " 'good', '[]')"
        )
    db.close()
