"""`GET /v1/alarms` over SQLite and PostgreSQL databases filled through the ingest path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

from collector.api.app import create_app
from collector.storage import open_storage
from collector.storage.base import Storage
from specs.records import AlarmEvent, AlarmRecord, iso_time
from tests.support.collector_api import BEIJING, NANCHANG, TOKENS, store_blocks
from tests.support.collector_client import (
    BASE_TIME,
    SimGateway,
    catalogue_with_coal,
)
from tests.support.collector_env import register
from tests.support.records import alarm_record

ALARM_KEYS = {
    "gateway",
    "alarm_id",
    "point",
    "quota",
    "level",
    "raised_at",
    "cleared_at",
    "value",
    "threshold",
    "unit",
    "trigger_t",
    "flags",
    "active",
}
RAISE, CLEAR = AlarmEvent.RAISE, AlarmEvent.CLEAR


async def _store(
    storage: Storage, gateway: SimGateway, blocks: Sequence[list[AlarmRecord]]
) -> None:
    await store_blocks(
        storage, gateway, blocks, received=BASE_TIME, catalogue=catalogue_with_coal()
    )


@pytest.fixture
async def client(storage_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with open_storage(storage_url) as storage:
        await register(storage, NANCHANG, BEIJING)
        # Nanchang: a1 raised and cleared, a2 active, a3 only cleared so far (its raise is
        # in a block not yet arrived); blocks stored in one batch, the clear of a1 first.
        await _store(
            storage,
            NANCHANG,
            [
                [alarm_record("a1", CLEAR, BASE_TIME + 20, value=8.1)],
                [
                    alarm_record("a1", RAISE, BASE_TIME + 10, trigger_t=BASE_TIME + 9),
                    alarm_record("a2", RAISE, BASE_TIME + 30, level="HH", threshold=9.0),
                ],
                [alarm_record("a3", CLEAR, BASE_TIME + 40)],
            ],
        )
        await _store(storage, BEIJING, [[alarm_record("b1", RAISE, BASE_TIME + 15)]])
        app = create_app(storage, TOKENS, clock=lambda: BASE_TIME + 100)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://collector") as http:
            yield http


async def _get(
    client: httpx.AsyncClient, bearer: str = "all-token", **params: Any
) -> dict[str, Any]:
    response = await client.get(
        "/v1/alarms", params=params, headers={"Authorization": f"Bearer {bearer}"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"items", "next"}
    return body  # type: ignore[no-any-return]


async def _ids(client: httpx.AsyncClient, bearer: str = "all-token", **params: Any) -> list[str]:
    return [item["alarm_id"] for item in (await _get(client, bearer, **params))["items"]]


async def test_alarm_shape_and_pairing(client: httpx.AsyncClient) -> None:
    body = await _get(client)
    assert body["next"] is None
    items = {item["alarm_id"]: item for item in body["items"]}
    assert all(set(item) == ALARM_KEYS for item in items.values())
    assert items["a1"] == {
        "gateway": NANCHANG.gateway,
        "alarm_id": "a1",
        "point": "T001-LT-01",
        "quota": "WHP-LT",
        "level": "H",
        "raised_at": iso_time(BASE_TIME + 10),
        "cleared_at": iso_time(BASE_TIME + 20),
        "value": 8.7,
        "threshold": 8.5,
        "unit": "m",
        "trigger_t": iso_time(BASE_TIME + 9),
        "flags": [],
        "active": False,
    }
    assert (items["a2"]["cleared_at"], items["a2"]["level"], items["a2"]["active"]) == (
        None,
        "HH",
        True,
    )
    assert (items["a3"]["raised_at"], items["a3"]["cleared_at"]) == (
        None,
        iso_time(BASE_TIME + 40),
    )


async def test_ordered_by_raise_time(client: httpx.AsyncClient) -> None:
    assert await _ids(client) == ["a1", "b1", "a2", "a3"]


async def test_active_filter(client: httpx.AsyncClient) -> None:
    assert await _ids(client, active="true") == ["b1", "a2"]
    assert await _ids(client, active="false") == ["a1", "a3"]


async def test_time_window_keeps_alarms_whose_span_meets_it(client: httpx.AsyncClient) -> None:
    # a1 spans [10, 20): over before 25. Active alarms span to now.
    assert await _ids(client, **{"from": iso_time(BASE_TIME + 25)}) == ["b1", "a2", "a3"]
    assert await _ids(client, to=iso_time(BASE_TIME + 15)) == ["a1"]
    window = {"from": iso_time(BASE_TIME + 12), "to": iso_time(BASE_TIME + 31)}
    assert await _ids(client, **window) == ["a1", "b1", "a2"]
    assert await _ids(client, active="true", **window) == ["b1", "a2"]


async def test_gateway_filter_and_district_scoping(client: httpx.AsyncClient) -> None:
    assert await _ids(client, gateway=BEIJING.gateway) == ["b1"]
    assert await _ids(client, "nc-token") == ["a1", "a2", "a3"]
    assert await _ids(client, "nc-token", gateway=BEIJING.gateway) == []
    assert await _ids(client, "sz-token") == []


async def test_pages_return_every_alarm_once(client: httpx.AsyncClient) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        page = await _get(client, limit=1, **({"cursor": cursor} if cursor else {}))
        seen.extend(item["alarm_id"] for item in page["items"])
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == ["a1", "b1", "a2", "a3"]


@pytest.mark.parametrize(
    "params",
    [{"from": "yesterday"}, {"to": "2026-01-01T00:00:00"}, {"cursor": "garbage"}, {"active": "x"}],
)
async def test_bad_parameters_are_refused(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get(
        "/v1/alarms", params=params, headers={"Authorization": "Bearer all-token"}
    )
    assert response.status_code in {400, 422}


async def test_alarms_need_a_token_and_are_documented(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/alarms")).status_code == 401
    spec = (await client.get("/openapi.json", headers={"Authorization": "Bearer nc-token"})).json()
    assert "/v1/alarms" in spec["paths"]
