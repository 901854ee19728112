"""`?tz=` and `api.tz`: every time the API shows is at the chosen offset; float32 values show
their shortest digits. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from collector.config import parse_collector_config
from collector.model import IngestBatch, StatusUpdate
from collector.storage import open_storage
from collector.storage.base import Storage
from configkit.issues import ConfigError
from specs.records import AlarmEvent, GapReason, Record
from tests.support.collector_api import (
    BEIJING,
    FLOAT32,
    NANCHANG,
    NOW,
    assert_problem,
    auth,
    get_all,
    get_page,
    level,
    pressure,
    serve,
    store_blocks,
)
from tests.support.collector_client import BASE_TIME, gap_record
from tests.support.collector_env import register
from tests.support.config_files import COLLECTOR_HEAD
from tests.support.records import alarm_record

THRESHOLD32 = 2.299999952316284  # float32(2.3) widened
BEIJING_TZ = timezone(timedelta(hours=8))
TIMED_LISTS: dict[str, tuple[str, ...]] = {
    "/v1/readings": ("t",),
    "/v1/latest": ("t",),
    "/v1/alarms": ("raised_at", "cleared_at", "trigger_t"),
    "/v1/gaps": ("from", "to"),
    "/v1/gateways": ("last_seen",),
}


async def _fill(storage: Storage) -> None:
    await register(storage, NANCHANG, BEIJING)
    nanchang: list[Record] = [
        level(BASE_TIME + 1, 1.5),
        level(BASE_TIME + 2, FLOAT32),
        pressure(BASE_TIME + 2, 0.1),  # 0.1 is no float32: shown as it is
        alarm_record("a-1", AlarmEvent.RAISE, BASE_TIME + 2, value=FLOAT32, threshold=THRESHOLD32),
        gap_record(3, 5, GapReason.DISK_FULL),
    ]
    await store_blocks(storage, NANCHANG, [nanchang])
    await store_blocks(storage, BEIJING, [[level(BASE_TIME + 1, 7.0)]])
    await storage.ingest(
        IngestBatch(statuses=[StatusUpdate(NANCHANG.gateway, online=True, at=NOW)])
    )


@pytest.fixture
async def storage(storage_url: str) -> AsyncIterator[Storage]:
    async with open_storage(storage_url) as opened:
        await _fill(opened)
        yield opened


@pytest.fixture
async def client(storage: Storage) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(storage) as http:
        yield http


def _times(items: list[dict[str, Any]], fields: tuple[str, ...]) -> list[str]:
    return [item[field] for item in items for field in fields if item[field] is not None]


@pytest.mark.parametrize("path", list(TIMED_LISTS))
async def test_every_time_shows_the_asked_offset(client: httpx.AsyncClient, path: str) -> None:
    fields = TIMED_LISTS[path]
    utc = _times((await get_page(client, path))["items"], fields)
    beijing = _times((await get_page(client, path, tz="+08:00"))["items"], fields)
    west = _times((await get_page(client, path, tz="-05:30"))["items"], fields)
    assert utc, f"{path} shows no times to compare"
    assert all(t.endswith("+00:00") for t in utc)
    assert all(t.endswith("+08:00") for t in beijing)
    assert all(t.endswith("-05:30") for t in west)
    # The same instants, only shown differently.
    instants = [datetime.fromisoformat(t) for t in utc]
    assert [datetime.fromisoformat(t) for t in beijing] == instants
    assert [datetime.fromisoformat(t) for t in west] == instants


async def test_the_configured_offset_is_the_default(storage: Storage) -> None:
    async with serve(storage, BEIJING_TZ) as http:
        body = await get_page(http, "/v1/readings", gateway=NANCHANG.gateway, point="T001-LT-01")
        assert [r["t"] for r in body["items"]] == [
            "2026-05-29T04:26:41.000+08:00",
            "2026-05-29T04:26:42.000+08:00",
        ]
        utc = await get_page(http, "/v1/readings", tz="+00:00", point="T001-LT-01")
        assert all(r["t"].endswith("+00:00") for r in utc["items"])


async def test_a_bare_plus_in_the_url_still_means_plus(client: httpx.AsyncClient) -> None:
    # Typed into a URL, `+` decodes as a space: ` 08:00` is read as +08:00.
    response = await client.get("/v1/readings?tz=+08:00&point=T001-PT-01", headers=auth())
    assert response.status_code == 200, response.text
    assert [r["t"] for r in response.json()["items"]] == ["2026-05-29T04:26:42.000+08:00"]


@pytest.mark.parametrize("path", [*TIMED_LISTS, "/v1/points"])
@pytest.mark.parametrize("tz", ["08:00", "+8", "Asia/Shanghai", "+14:30", "Z", "+08:00:00"])
async def test_bad_offsets_are_400_problems(client: httpx.AsyncClient, path: str, tz: str) -> None:
    response = await client.get(path, params={"tz": tz}, headers=auth())
    if path == "/v1/points":  # shows no time: tz is not one of its parameters
        assert response.status_code == 200
        return
    assert "tz" in assert_problem(response, 400)["detail"]


async def test_offsets_keep_the_district_scope(client: httpx.AsyncClient) -> None:
    for path in TIMED_LISTS:
        mine = await get_page(client, path, "nc-token", tz="+08:00")
        assert {item["gateway"] for item in mine["items"]} <= {NANCHANG.gateway}
        assert (await get_page(client, path, "sz-token", tz="+08:00"))["items"] == []


async def test_pages_continue_whatever_the_offset(client: httpx.AsyncClient) -> None:
    everything = (await get_page(client, "/v1/readings", tz="+08:00"))["items"]
    paged, pages = await get_all(client, "/v1/readings", tz="+08:00", limit=1)
    assert paged == everything
    assert pages == len(everything) == 4


async def test_float32_values_show_their_shortest_digits(client: httpx.AsyncClient) -> None:
    readings = (await get_page(client, "/v1/readings", gateway=NANCHANG.gateway))["items"]
    values = {(r["point"], r["t"][:19]): r["value"] for r in readings}
    assert values == {
        ("T001-LT-01", "2026-05-28T20:26:41"): 1.5,
        ("T001-LT-01", "2026-05-28T20:26:42"): 2.4833622,
        ("T001-PT-01", "2026-05-28T20:26:42"): 0.1,
    }
    response = await client.get("/v1/readings", params={"point": "T001-LT-01"}, headers=auth())
    assert "2.4833622," in response.text
    assert "2.4833621978759766" not in response.text
    latest = (await get_page(client, "/v1/latest", gateway=NANCHANG.gateway))["items"]
    assert [r["value"] for r in latest] == [2.4833622, 0.1]
    [alarm] = (await get_page(client, "/v1/alarms"))["items"]
    assert (alarm["value"], alarm["threshold"]) == (2.4833622, 2.3)


# --- api.tz in the collector config ---------------------------------------------------------

CONFIG = COLLECTOR_HEAD + "TZ\n"


def _config(tz_line: str) -> timezone:
    return parse_collector_config(CONFIG.replace("TZ", tz_line), "c.yaml", Path("/srv")).api.tz


def test_api_tz_defaults_to_utc_and_takes_an_offset() -> None:
    assert _config("") == UTC
    assert _config('  tz: "+08:00"') == BEIJING_TZ
    assert _config('  tz: "-05:30"') == timezone(-timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('  tz: "+15:00"', "beyond"),
        ('  tz: "Asia/Shanghai"', "UTC offset"),
        ("  tz: +10:00", "quoted"),  # YAML reads this as 600 (base 60)
    ],
)
def test_bad_api_tz_names_file_line_and_key(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(line)
    text = str(caught.value)
    assert "c.yaml:6" in text
    assert "api.tz" in text
    assert message in text
