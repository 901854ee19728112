"""`GET /v1/readings?every=`: buckets aggregated by the database, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timezone
from typing import Any

import httpx
import pytest

from collector.api.core import encode_cursor
from collector.storage import open_storage
from specs.records import Quality, Reading, iso_time, parse_iso_time
from tests.support.collector_api import (
    BEIJING,
    FLOAT32,
    NANCHANG,
    assert_problem,
    auth,
    get_all,
    get_page,
    level,
    pressure,
    serve,
    store_blocks,
)
from tests.support.collector_env import register

HOUR = 1_779_998_400.0  # 2026-05-28T20:00:00Z, a whole UTC hour
BEIJING_MIDNIGHT = 1_779_984_000.0  # 2026-05-29T00:00:00+08:00
# Arrival after every reading stored here: none is ahead of the collector's clock, which keeps
# a reading out of the rollups that whole-minute buckets read (collector.storage.ahead).
RECEIVED = BEIJING_MIDNIGHT + 86_400
BUCKET_KEYS = {"gateway", "point", "quota", "unit", "t", "min", "max", "avg", "last", "count"}

# Nanchang's level: three usable readings in the first minute (a bad one with a value is left
# out), one float32 in the second, only bad readings in the third.
FIRST_MINUTES = [
    level(HOUR, 1.0),
    level(HOUR + 10, 3.0),
    level(HOUR + 20, 100.0, Quality.BAD),
    level(HOUR + 30, 2.0),
    level(HOUR + 65, None, Quality.BAD),
    level(HOUR + 70, FLOAT32),
    level(HOUR + 130, None, Quality.BAD),
]
# Around Beijing's midnight: one reading the day before, two the day after.
AROUND_MIDNIGHT = [
    pressure(BEIJING_MIDNIGHT - 1, 0.5),
    pressure(BEIJING_MIDNIGHT, 0.25),
    pressure(BEIJING_MIDNIGHT + 86_399, 0.75),
]


@pytest.fixture
async def client(storage_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with open_storage(storage_url) as storage:
        await register(storage, NANCHANG, BEIJING)
        await store_blocks(storage, NANCHANG, [FIRST_MINUTES, AROUND_MIDNIGHT], received=RECEIVED)
        await store_blocks(
            storage,
            BEIJING,
            [[level(HOUR + 5 + 60 * i, float(i)) for i in range(5)]],
            received=RECEIVED,
        )
        async with serve(storage) as http:
            yield http


Stats = tuple[float | None, float | None, float | None, float | None, int]
"""min, max, avg, last, count"""


def _bucket(t: float, stats: Stats, zone: timezone = UTC) -> dict[str, Any]:
    shown = datetime.fromtimestamp(t, zone).isoformat(timespec="milliseconds")
    low, high, mean, last, count = stats
    return {"t": shown, "min": low, "max": high, "avg": mean, "last": last, "count": count}


def _strip(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: item[k] for k in ("t", "min", "max", "avg", "last", "count")} for item in items]


async def _nanchang_series(
    client: httpx.AsyncClient, point: str, every: str, **params: str
) -> dict[str, Any]:
    """The first page of Nanchang's `point` in `every` buckets (more query `params`)."""
    return await get_page(
        client, "/v1/readings", gateway=NANCHANG.gateway, point=point, every=every, **params
    )


async def test_one_minute_buckets_aggregate_usable_readings(client: httpx.AsyncClient) -> None:
    body = await _nanchang_series(client, "T001-LT-01", "1m")
    assert body["next"] is None
    items = body["items"]
    assert all(set(item) == BUCKET_KEYS for item in items)
    assert {(i["gateway"], i["point"], i["quota"], i["unit"]) for i in items} == {
        (NANCHANG.gateway, "T001-LT-01", "WHP-LT", "m")
    }
    assert _strip(items) == [
        _bucket(HOUR, (1.0, 3.0, 2.0, 2.0, 3)),
        _bucket(HOUR + 60, (2.4833622, 2.4833622, 2.4833622, 2.4833622, 1)),
        _bucket(HOUR + 120, (None, None, None, None, 0)),
    ]


async def test_hours_are_utc_hours_whatever_the_offset(client: httpx.AsyncClient) -> None:
    body = await _nanchang_series(client, "T001-LT-01", "1h", tz="+08:00")
    [hour] = body["items"]
    assert hour["t"] == "2026-05-29T04:00:00.000+08:00"  # 20:00 UTC
    assert (hour["min"], hour["max"], hour["last"], hour["count"]) == (1.0, 3.0, 2.4833622, 4)
    # (1 + 3 + 2 + FLOAT32) / 4 = 2.120840549468994 is itself exactly a float32: shown so.
    assert (1.0 + 3.0 + 2.0 + FLOAT32) / 4 == 2.120840549468994
    assert hour["avg"] == 2.1208405


@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        # A day at +08:00 is a Beijing day: midnight splits the readings 1 + 2.
        ("+08:00", [("2026-05-28T00:00:00.000+08:00", 1), ("2026-05-29T00:00:00.000+08:00", 2)]),
        # In UTC the same readings fall 2 + 1 (Beijing's midnight is 16:00 UTC).
        ("+00:00", [("2026-05-28T00:00:00.000+00:00", 2), ("2026-05-29T00:00:00.000+00:00", 1)]),
    ],
)
async def test_days_are_days_at_the_shown_offset(
    client: httpx.AsyncClient, tz: str, expected: list[tuple[str, int]]
) -> None:
    body = await _nanchang_series(client, "T001-PT-01", "1d", tz=tz)
    assert [(item["t"], item["count"]) for item in body["items"]] == expected


@pytest.mark.parametrize("every", ["1m", "5m", "15m", "1h", "1d", "7s"])
async def test_pages_return_every_bucket_once_in_order(
    client: httpx.AsyncClient, every: str
) -> None:
    everything = (await get_page(client, "/v1/readings", every=every, limit=10_000))["items"]
    paged, pages = await get_all(client, "/v1/readings", every=every, limit=2)
    assert paged == everything
    assert pages == max(1, math.ceil(len(everything) / 2))
    keys = [(item["gateway"], item["point"], item["t"]) for item in everything]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert {item["gateway"] for item in everything} == {NANCHANG.gateway, BEIJING.gateway}


async def test_from_and_to_pick_readings(client: httpx.AsyncClient) -> None:
    window = {"from": iso_time(HOUR + 10), "to": iso_time(HOUR + 70)}
    body = await _nanchang_series(client, "T001-LT-01", "1m", **window)
    assert _strip(body["items"]) == [
        _bucket(HOUR, (2.0, 3.0, 2.5, 2.0, 2)),  # a partial first bucket: 3.0 and 2.0
        _bucket(HOUR + 60, (None, None, None, None, 0)),  # the float32 is at `to`: left out
    ]


async def test_a_token_sees_only_its_districts_buckets(client: httpx.AsyncClient) -> None:
    mine = await get_page(client, "/v1/readings", "nc-token", every="1m", limit=10_000)
    assert {item["gateway"] for item in mine["items"]} == {NANCHANG.gateway}
    foreign = await get_page(
        client, "/v1/readings", "nc-token", every="1m", gateway=BEIJING.gateway
    )
    assert foreign["items"] == []
    assert (await get_page(client, "/v1/readings", "sz-token", every="1h"))["items"] == []
    # A forged cursor naming a Beijing series shows nothing of it either.
    forged = encode_cursor("buckets", [BEIJING.gateway, "T001-LT-01", HOUR - 60, 60, 0])
    after = await get_page(client, "/v1/readings", "nc-token", every="1m", cursor=forged)
    assert {item["gateway"] for item in after["items"]} <= {NANCHANG.gateway}


@pytest.mark.parametrize(
    "every", ["0s", "32d", "745h", "1w", "1.5h", "-1m", "m", "1M", "", "99999999d"]
)
async def test_bad_widths_are_400_problems(client: httpx.AsyncClient, every: str) -> None:
    response = await client.get("/v1/readings", params={"every": every}, headers=auth())
    assert "every" in assert_problem(response, 400)["detail"]


async def test_bad_bucket_cursors_are_400_problems(client: httpx.AsyncClient) -> None:
    raw = await get_page(client, "/v1/readings", limit=1)
    response = await client.get(
        "/v1/readings", params={"every": "1m", "cursor": raw["next"]}, headers=auth()
    )
    assert "buckets" in assert_problem(response, 400)["detail"]
    minutes = await get_page(client, "/v1/readings", every="1m", limit=1)
    response = await client.get(
        "/v1/readings", params={"every": "1h", "cursor": minutes["next"]}, headers=auth()
    )
    assert "every" in assert_problem(response, 400)["detail"]
    response = await client.get(
        "/v1/readings", params={"every": "1m", "cursor": "garbage"}, headers=auth()
    )
    assert_problem(response, 400)
    response = await client.get("/v1/readings", params={"every": "1m", "limit": 0}, headers=auth())
    assert_problem(response, 422)


# --- the database agrees with a plain Python aggregation ------------------------------------

ZONES = ["+00:00", "+08:00", "-05:30"]


def _random_readings(seed: int) -> list[Reading]:
    rng = random.Random(seed)
    start = HOUR - 2 * 86_400
    found: list[Reading] = []
    for point, make in (("T001-LT-01", level), ("T001-PT-01", pressure)):
        t = start
        for _ in range(400):
            t += rng.choice([0.25, 1.5, 7.0, 59.999, 600.0, 3_600.0, 20_000.0])
            quality = rng.choice([Quality.GOOD] * 6 + [Quality.UNCERTAIN, Quality.BAD])
            value = None if quality is Quality.BAD and rng.random() < 0.5 else rng.uniform(-5, 5)
            found.append(make(round(t, 3), value, quality))
        assert found[-1].point == point
    return found


def _expected(readings: list[Reading], width: int, offset: int) -> list[tuple[Any, ...]]:
    groups: dict[tuple[str, int], list[Reading]] = {}
    for reading in readings:
        t = datetime.fromisoformat(reading.t).timestamp()
        groups.setdefault((reading.point, math.floor((t + offset) / width)), []).append(reading)
    rows = []
    for (point, index), members in sorted(groups.items()):
        usable = [r for r in members if r.value is not None and r.quality is not Quality.BAD]
        values = [r.value for r in usable if r.value is not None]
        rows.append(
            (
                point,
                index * width - offset,
                min(values, default=None),
                max(values, default=None),
                sum(values) / len(values) if values else None,
                usable[-1].value if usable else None,
                len(values),
            )
        )
    return rows


@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize("every", ["1s", "1m", "5m", "15m", "1h", "1d", "2d"])
async def test_buckets_agree_with_python(storage_url: str, every: str, tz: str) -> None:
    readings = _random_readings(seed=len(every) + len(tz))
    async with open_storage(storage_url) as storage:
        await register(storage, NANCHANG)
        blocks = [readings[i : i + 200] for i in range(0, 800, 200)]
        newest = max(parse_iso_time(r.t) for r in readings)  # received after it, as RECEIVED
        await store_blocks(storage, NANCHANG, blocks, received=newest)
        async with serve(storage) as http:
            items, _ = await get_all(http, "/v1/readings", every=every, tz=tz, limit=97)
    width = {"s": 1, "m": 60, "h": 3600, "d": 86_400}[every[-1]] * int(every[:-1])
    sign = -1 if tz.startswith("-") else 1
    offset_seconds = sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    offset = offset_seconds if width % 86_400 == 0 else 0
    expected = _expected(readings, width, offset)
    got = [
        (
            item["point"],
            datetime.fromisoformat(item["t"]).timestamp(),
            item["min"],
            item["max"],
            item["avg"],
            item["last"],
            item["count"],
        )
        for item in items
    ]
    assert [row[:2] for row in got] == [row[:2] for row in expected]
    assert all(item["t"].endswith(tz) for item in items)
    for mine, theirs in zip(got, expected, strict=True):
        assert mine[2:4] == theirs[2:4]
        assert mine[5:] == theirs[5:]
        if theirs[4] is None:
            assert mine[4] is None
        else:
            assert mine[4] == pytest.approx(theirs[4], rel=1e-12, abs=1e-12)
