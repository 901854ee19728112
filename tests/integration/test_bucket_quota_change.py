"""A bucket never aggregates values of different quota or unit (`GET /v1/readings?every=`).

A site-map push re-purposed point P1 mid-minute, a tank level (WHP-LT, m) becoming a
pressure (WHP-PT, MPa); one reading of that minute also came in cm. Every bucket grouped by
its start only and took quota and unit from its newest reading: the minute showed `WHP-PT,
MPa, min 0.91, max 84.0`, a level of 84 m labelled MPa (hostile buckets_rollup_vs_raw.py),
on both backends, from the rollups and from the raw readings alike. Now a bucket in which
the point changed gives one row per (quota, unit), ordered by them, and a cursor resumes
between the rows of one bucket.
"""

from __future__ import annotations

from typing import Any

from collector.storage import open_storage
from collector.storage.sqlite.rollups import ROLLUP_TABLE
from specs.records import Quality, Reading, iso_time
from tests.support.collector_api import NANCHANG, get_all, serve, store_blocks
from tests.support.collector_client import BASE_TIME
from tests.support.collector_env import register
from tests.support.postgres import sql_execute

M0 = (int(BASE_TIME) // 60) * 60


def _readings() -> list[tuple[float, Reading]]:
    """The readings with their unix times."""
    out = []
    for i in range(0, 180, 7):
        t = M0 + i + 0.25
        if i < 90:
            out.append((t, Reading("P1", "WHP-LT", iso_time(t), float(i), "m", Quality.GOOD)))
        else:
            out.append((t, Reading("P1", "WHP-PT", iso_time(t), i / 100, "MPa", Quality.GOOD)))
    t = M0 + 121.5
    out.append((t, Reading("P1", "WHP-LT", iso_time(t), None, "m", Quality.BAD)))
    t = M0 + 122.5
    out.append((t, Reading("P1", "WHP-LT", iso_time(t), 3.0, "cm", Quality.GOOD)))
    return out


def _expected() -> list[tuple[Any, ...]]:
    """(minute, quota, unit, min, max, count) of every (minute, quota, unit), in order.

    The collector stores the level in cm as metres (the catalogue's unit of WHP-LT).
    """
    groups: dict[tuple[float, str, str], list[float]] = {}
    for at, r in _readings():
        t = (int(at) // 60) * 60
        scale = 0.01 if r.unit == "cm" else 1.0
        values = groups.setdefault((t, r.quota, "m" if r.unit == "cm" else r.unit), [])
        if r.value is not None and r.quality != Quality.BAD:
            values.append(r.value * scale)
    return [
        (
            iso_time(t).replace("Z", "+00:00"),
            quota,
            unit,
            min(v, default=None),
            max(v, default=None),
            len(v),
        )
        for (t, quota, unit), v in sorted(groups.items())
    ]


async def test_a_bucket_holds_one_quota_and_unit(storage_url: str) -> None:
    async with open_storage(storage_url) as storage:
        await register(storage, NANCHANG)
        await store_blocks(storage, NANCHANG, [[r for _, r in _readings()]])
        shown = {}
        async with serve(storage) as http:
            # Whole minutes: from the rollups; a millisecond earlier: from the raw readings.
            for path, start in (("rollups", M0), ("raw", M0 - 0.001)):
                for limit in (100, 1, 2):
                    items, _ = await get_all(
                        http,
                        "/v1/readings",
                        every="1m",
                        limit=limit,
                        **{"from": iso_time(start), "to": iso_time(M0 + 240)},
                    )
                    shown[path, limit] = [
                        (b["t"], b["quota"], b["unit"], b["min"], b["max"], b["count"])
                        for b in items
                    ]
    assert shown == {key: _expected() for key in shown}


async def _as_before_the_split(url: str) -> None:
    """The rollups as a collector before the split left them: one row per minute, its key
    (gateway, point, minute), a re-purposed minute's values under the newest label."""
    mixed = (M0 + 60, M0 + 120)
    for minute in mixed:
        await sql_execute(
            url, "DELETE FROM readings_1m WHERE minute = ? AND quota = 'WHP-LT'", float(minute)
        )
    await sql_execute(url, "UPDATE readings_1m SET lo = 63.0 WHERE minute = ?", float(M0 + 60))
    if url.startswith("sqlite:///"):
        old_table = ROLLUP_TABLE.replace(
            "PRIMARY KEY (gateway, point, minute, quota, unit)",
            "PRIMARY KEY (gateway, point, minute)",
        ).replace("readings_1m", "readings_1m_old")
        for statement in (
            old_table,
            "INSERT INTO readings_1m_old SELECT * FROM readings_1m",
            "DROP TABLE readings_1m",
            "ALTER TABLE readings_1m_old RENAME TO readings_1m",
            "PRAGMA user_version = 16",
        ):
            await sql_execute(url, statement)
        return
    for statement in (
        "ALTER TABLE readings_1m DROP CONSTRAINT readings_1m_pkey",
        "ALTER TABLE readings_1m ADD PRIMARY KEY (gateway, point, minute)",
        "DELETE FROM schema_migrations WHERE version = 13",
    ):
        await sql_execute(url, statement)


async def test_the_upgrade_splits_the_minutes_held_mixed(storage_url: str) -> None:
    async with open_storage(storage_url) as storage:
        await register(storage, NANCHANG)
        await store_blocks(storage, NANCHANG, [[r for _, r in _readings()]])
    await _as_before_the_split(storage_url)
    async with open_storage(storage_url) as storage, serve(storage) as http:
        # SQLite schema 17 / PostgreSQL migration 13 rolled the mixed minutes up again.
        items, _ = await get_all(
            http, "/v1/readings", every="1m", **{"from": iso_time(M0), "to": iso_time(M0 + 240)}
        )
    shown = [(b["t"], b["quota"], b["unit"], b["min"], b["max"], b["count"]) for b in items]
    assert shown == _expected()
