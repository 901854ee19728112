"""The collector's HTTP API over SQLite and PostgreSQL databases filled through the ingest path."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx
import pytest

from collector.model import IngestBatch, StatusUpdate
from collector.storage import open_storage
from collector.storage.base import Storage
from specs.records import GapReason, Quality, Reading, Record, iso_time
from tests.support.collector_api import BEIJING, NANCHANG, NOW, auth, get_page, serve, store_blocks
from tests.support.collector_client import BASE_TIME, SimGateway, gap_record
from tests.support.collector_env import register

GAP_KEYS = {"gateway", "epoch", "from_seq", "to_seq", "from", "to", "lost", "reason", "state"}
READING_KEYS = {"gateway", "point", "quota", "t", "value", "unit", "quality", "flags"}
GATEWAY_KEYS = {
    "gateway",
    "enterprise",
    "district",
    "online",
    "last_seen",
    "epoch",
    "acked_through",
    "gaps",
}


def _readings(gateway: SimGateway, seq: int) -> list[Reading]:
    return [
        Reading("T001-LT-01", "WHP-LT", iso_time(BASE_TIME + seq), seq * 1.0, "m", Quality.GOOD),
        Reading(
            "T001-PT-01",
            "WHP-PT",
            iso_time(BASE_TIME + seq),
            None if seq == 3 else seq / 10,
            "MPa",
            Quality.BAD if seq == 3 else Quality.GOOD,
            ("clock_suspect",) if seq == 3 else (),
        ),
    ]


async def _store(
    storage: Storage,
    gateway: SimGateway,
    seqs: list[int],
    records: Mapping[int, Sequence[Record]] | None = None,
) -> None:
    """Blocks `seqs` of `gateway`: each one `_readings` unless `records` has it."""
    chosen = {seq: (records or {}).get(seq, _readings(gateway, seq)) for seq in seqs}
    await store_blocks(storage, gateway, chosen)


@pytest.fixture
async def client(storage_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with open_storage(storage_url) as storage:
        await register(storage, NANCHANG, BEIJING)
        await _store(storage, NANCHANG, [1, 2, 3, 5])  # seq 4 missing: one open gap
        await _store(storage, BEIJING, [1, 2])
        await storage.ingest(
            IngestBatch(statuses=[StatusUpdate(NANCHANG.gateway, online=True, at=NOW)])
        )
        async with serve(storage) as http:
            yield http


async def test_health_needs_no_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


V1_LISTS = ["/v1/gateways", "/v1/points", "/v1/latest", "/v1/readings", "/v1/alarms", "/v1/gaps"]


@pytest.mark.parametrize("path", V1_LISTS)
@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic all-token", "all-token"])
async def test_every_v1_route_needs_a_known_bearer_token(
    client: httpx.AsyncClient, path: str, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = await client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    _assert_problem(response, 401)


def _assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """An RFC 9457 problem document with this status."""
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) == {"type", "title", "status", "detail"}
    assert (body["type"], body["status"]) == ("about:blank", status)
    assert body["title"]
    assert body["detail"]
    return body


async def test_openapi_docs_are_served(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs", headers=auth())).status_code == 200
    spec = (await client.get("/openapi.json", headers=auth())).json()
    assert set(V1_LISTS) <= set(spec["paths"])
    gap = spec["components"]["schemas"]["GapOut"]
    assert set(gap["properties"]) == GAP_KEYS
    assert gap["properties"]["state"]["enum"] == ["open", "closed"]
    errors = spec["paths"]["/v1/gaps"]["get"]["responses"]
    assert {"400", "401", "413", "414", "422", "429"} <= set(errors)
    assert "Problem" in spec["components"]["schemas"]


async def test_gateways_shape(client: httpx.AsyncClient) -> None:
    body = await get_page(client, "/v1/gateways")
    assert body["next"] is None
    by_id = {item["gateway"]: item for item in body["items"]}
    assert set(by_id) == {NANCHANG.gateway, BEIJING.gateway}
    nanchang = by_id[NANCHANG.gateway]
    assert set(nanchang) == GATEWAY_KEYS
    assert nanchang == {
        "gateway": NANCHANG.gateway,
        "enterprise": NANCHANG.enterprise,
        "district": "360100",
        "online": True,
        "last_seen": iso_time(NOW),
        "epoch": "epoch-1",
        "acked_through": 3,
        "gaps": 1,
    }
    assert by_id[BEIJING.gateway]["acked_through"] == 2
    assert by_id[BEIJING.gateway]["online"] is True  # blocks count as signs of life


async def test_district_scoping(client: httpx.AsyncClient) -> None:
    nanchang = await get_page(client, "/v1/gateways", "nc-token")
    assert [g["gateway"] for g in nanchang["items"]] == [NANCHANG.gateway]
    foreign = await get_page(client, "/v1/readings", "nc-token", gateway=BEIJING.gateway)
    assert foreign["items"] == []
    for path in ("/v1/gateways", "/v1/points", "/v1/latest", "/v1/readings"):
        assert (await get_page(client, path, "sz-token"))["items"] == []


async def test_points_shape_and_quota_filter(client: httpx.AsyncClient) -> None:
    body = await get_page(client, "/v1/points", gateway=NANCHANG.gateway)
    # No meta message yet: nothing describes the points beyond their readings.
    described: dict[str, object] = {"name": None, "device": None, "thresholds": {}}
    assert body["items"] == [
        {"gateway": NANCHANG.gateway, "point": "T001-LT-01", "quota": "WHP-LT", "unit": "m"}
        | described,
        {"gateway": NANCHANG.gateway, "point": "T001-PT-01", "quota": "WHP-PT", "unit": "MPa"}
        | described,
    ]
    pressure = await get_page(client, "/v1/points", quota="WHP-PT")
    assert {p["gateway"] for p in pressure["items"]} == {NANCHANG.gateway, BEIJING.gateway}


async def test_latest_is_the_newest_reading_per_point(client: httpx.AsyncClient) -> None:
    body = await get_page(client, "/v1/latest", enterprise=NANCHANG.enterprise)
    assert [set(item) for item in body["items"]] == [READING_KEYS, READING_KEYS]
    level, pressure = body["items"]
    assert level == {
        "gateway": NANCHANG.gateway,
        "point": "T001-LT-01",
        "quota": "WHP-LT",
        "t": iso_time(BASE_TIME + 5),
        "value": 5.0,
        "unit": "m",
        "quality": "good",
        "flags": [],
    }
    assert pressure["point"] == "T001-PT-01"
    assert (await get_page(client, "/v1/latest", gateway=BEIJING.gateway))["items"][0][
        "value"
    ] == 2.0


async def test_readings_shape_and_time_window(client: httpx.AsyncClient) -> None:
    body = await get_page(
        client,
        "/v1/readings",
        gateway=NANCHANG.gateway,
        point="T001-PT-01",
        **{"from": iso_time(BASE_TIME + 2), "to": iso_time(BASE_TIME + 5)},
    )
    items = body["items"]
    assert [item["t"] for item in items] == [iso_time(BASE_TIME + 2), iso_time(BASE_TIME + 3)]
    bad = items[1]
    assert set(bad) == READING_KEYS
    assert (bad["value"], bad["quality"], bad["flags"]) == (None, "bad", ["clock_suspect"])
    assert datetime.fromisoformat(bad["t"]).utcoffset() is not None


async def test_pagination_returns_every_reading_exactly_once(client: httpx.AsyncClient) -> None:
    everything = await get_page(client, "/v1/readings", limit=10_000)
    assert len(everything["items"]) == 12
    seen: list[tuple[str, str, str]] = []
    cursor = None
    pages = 0
    while True:
        page = await get_page(
            client, "/v1/readings", limit=5, **({"cursor": cursor} if cursor else {})
        )
        seen.extend((r["gateway"], r["point"], r["t"]) for r in page["items"])
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 12
    assert seen == [(r["gateway"], r["point"], r["t"]) for r in everything["items"]]


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "garbage"},
        {"from": "yesterday"},
        {"to": "2026-01-01T00:00:00"},  # no offset
        {"every": "1w"},  # not a bucket width (s, m, h or d)
    ],
)
async def test_bad_query_parameters_are_400(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get("/v1/readings", params=params, headers=auth())
    _assert_problem(response, 400)


@pytest.mark.parametrize("path", ["/v1/readings", "/v1/alarms", "/v1/quality", "/v1/audit/verify"])
@pytest.mark.parametrize(
    ("t_from", "t_to"),
    [
        ("2026-01-02T00:00:00+00:00", "2026-01-01T00:00:00+00:00"),  # to before from
        ("2026-01-01T08:00:00+08:00", "2026-01-01T00:00:00+00:00"),  # the same time
    ],
)
async def test_a_time_range_that_ends_before_it_starts_is_400(
    client: httpx.AsyncClient, path: str, t_from: str, t_to: str
) -> None:
    """As contract.md says for every route with `from` and `to`: before, /v1/readings and
    /v1/alarms answered 200 with an empty list where /v1/quality and /v1/audit/verify said 400;
    the buckets (`every=`) and CSV too."""
    params = {"from": t_from, "to": t_to}
    response = await client.get(path, params=params, headers=auth())
    assert _assert_problem(response, 400)["detail"] == "to: must be later than from"
    if path == "/v1/readings":
        for extra in ({"every": "1m"}, {}):
            headers = {**auth(), "Accept": "text/csv"} if not extra else auth()
            response = await client.get(path, params={**params, **extra}, headers=headers)
            assert _assert_problem(response, 400)["detail"] == "to: must be later than from"


@pytest.mark.parametrize("limit", [0, 10_001])
async def test_limit_is_bounded(client: httpx.AsyncClient, limit: int) -> None:
    response = await client.get("/v1/readings", params={"limit": limit}, headers=auth())
    assert "limit" in _assert_problem(response, 422)["detail"]


# --- GET /v1/gaps -----------------------------------------------------------------------------

# Nanchang: 1, 2, 3, 5 and 8 stored; 6..7 evicted from the full outbox and declared by block 8,
# which also reports a full disk that lost readings before they were sealed; 4 is missing.
EVICTED = gap_record(8, 120, GapReason.OUTBOX_FULL, epoch="epoch-1", from_seq=6, to_seq=7)
DISK_FULL = gap_record(8, 12, GapReason.DISK_FULL, point="T001-PT-01")


@pytest.fixture
async def gaps_client(storage_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with open_storage(storage_url) as storage:
        await register(storage, NANCHANG, BEIJING)
        eighth: list[Record] = [*_readings(NANCHANG, 8), EVICTED, DISK_FULL]
        await _store(storage, NANCHANG, [1, 2, 3, 5, 8], {8: eighth})
        await _store(storage, BEIJING, [1, 4])
        async with serve(storage) as http:
            yield http


def _open(gateway: SimGateway, low: int, high: int) -> dict[str, Any]:
    return {
        "gateway": gateway.gateway,
        "epoch": "epoch-1",
        "from_seq": low,
        "to_seq": high,
        "from": None,
        "to": None,
        "lost": None,
        "reason": "missing",
        "state": "open",
    }


NANCHANG_GAPS: list[dict[str, Any]] = [
    {
        "gateway": NANCHANG.gateway,
        "epoch": "epoch-1",
        "from_seq": 6,
        "to_seq": 7,
        "from": EVICTED.t_from,
        "to": EVICTED.t_to,
        "lost": 120,
        "reason": "outbox_full",
        "state": "closed",
    },
    {
        "gateway": NANCHANG.gateway,
        "epoch": None,
        "from_seq": None,
        "to_seq": None,
        "from": DISK_FULL.t_from,
        "to": DISK_FULL.t_to,
        "lost": 12,
        "reason": "disk_full",
        "state": "closed",
    },
    _open(NANCHANG, 4, 4),
]


def _sorted(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=lambda item: (item["gateway"], item["state"], str(item["reason"])))


async def test_gaps_list_open_holes_and_declared_records(gaps_client: httpx.AsyncClient) -> None:
    body = await get_page(gaps_client, "/v1/gaps", gateway=NANCHANG.gateway)
    assert body["next"] is None
    assert all(set(item) == GAP_KEYS for item in body["items"])
    assert _sorted(body["items"]) == _sorted(NANCHANG_GAPS)
    everything = await get_page(gaps_client, "/v1/gaps")
    assert _sorted(everything["items"]) == _sorted([*NANCHANG_GAPS, _open(BEIJING, 2, 3)])


@pytest.mark.parametrize("state", ["open", "closed"])
async def test_gaps_filter_by_state(gaps_client: httpx.AsyncClient, state: str) -> None:
    body = await get_page(gaps_client, "/v1/gaps", gateway=NANCHANG.gateway, state=state)
    assert _sorted(body["items"]) == _sorted([g for g in NANCHANG_GAPS if g["state"] == state])


async def test_gateways_count_open_gaps_only(gaps_client: httpx.AsyncClient) -> None:
    body = await get_page(gaps_client, "/v1/gateways")
    by_id = {item["gateway"]: item for item in body["items"]}
    # 6..7 were declared lost: acked_through stops at the one hole still expected.
    assert (by_id[NANCHANG.gateway]["gaps"], by_id[NANCHANG.gateway]["acked_through"]) == (1, 3)
    assert (by_id[BEIJING.gateway]["gaps"], by_id[BEIJING.gateway]["acked_through"]) == (1, 1)


async def test_gaps_are_scoped_by_district(gaps_client: httpx.AsyncClient) -> None:
    nanchang = await get_page(gaps_client, "/v1/gaps", "nc-token")
    assert {item["gateway"] for item in nanchang["items"]} == {NANCHANG.gateway}
    foreign = await get_page(gaps_client, "/v1/gaps", "nc-token", gateway=BEIJING.gateway)
    assert foreign["items"] == []
    assert (await get_page(gaps_client, "/v1/gaps", "sz-token"))["items"] == []


async def test_gaps_pages_return_every_gap_exactly_once(gaps_client: httpx.AsyncClient) -> None:
    everything = (await get_page(gaps_client, "/v1/gaps"))["items"]
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await get_page(
            gaps_client, "/v1/gaps", limit=1, **({"cursor": cursor} if cursor else {})
        )
        seen.extend(page["items"])
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == everything
    assert len(seen) == 4


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"state": "filled"}, 422),
        ({"cursor": "garbage"}, 400),
        ({"limit": 0}, 422),
    ],
)
async def test_bad_gap_queries_are_problems(
    gaps_client: httpx.AsyncClient, params: dict[str, str | int], status: int
) -> None:
    response = await gaps_client.get("/v1/gaps", params=params, headers=auth())
    _assert_problem(response, status)


async def test_a_cursor_of_another_list_is_refused(gaps_client: httpx.AsyncClient) -> None:
    page = await get_page(gaps_client, "/v1/readings", limit=1)
    response = await gaps_client.get("/v1/gaps", params={"cursor": page["next"]}, headers=auth())
    assert "gaps" in _assert_problem(response, 400)["detail"]
