"""`GET /v1/quality` over a real database filled through the ingest core, hand-computed.

Every API test runs on a SQLite file and on a PostgreSQL database, with the same figures.

Window [BASE, BASE + 600) (ten minutes), offline_after 60 s, `now` = BASE + 1000:

- A (enterprise 1, district 360100): two points polled every 10 s. Its blocks hold one minute
  of readings each (12), received a second after their last reading; minutes 4 and 5 never
  come (a two-minute gap: 24 readings), and the block of minute 1 arrives 90 s after its last
  reading (12 late readings). Heartbeats every 30 s, its last will at +240 s, back at +360 s:
  live 240 + 240 s. So: expected 120, received 96, late 12, online 0.8, completeness 0.8,
  timeliness 84 / 96 = 0.875.
- B (enterprise 2, district 360100): one point polled every 60 s, ten readings each received
  5 s after its time, heartbeats throughout: expected 10, received 10, online 1.0.
- C (enterprise 2, district 110101): one point polled every 30 s, no readings, silent in the
  window: expected 20, received 0, online 0.0, timeliness null.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from collector.api.app import create_app
from collector.api.core import ApiToken
from collector.ingest.core import Inbound, plan_batch
from collector.model import IngestBatch, KeyGrant, StatusUpdate
from collector.storage import open_storage, prune_storage
from collector.storage.base import Storage
from collector.storage.capabilities import QualityStats
from collector.storage.months import month_of, month_start, next_month
from collector.storage.quality import MAX_EXPECTED
from collector.storage.retention import DAY, RetentionPolicy
from edge_agent.config import load_site_config
from edge_agent.core.meta import gateway_meta
from edge_agent.core.plan_compile import identity_of
from edge_agent.core.points import resolve_points
from specs.block import GENESIS, block_hash
from specs.catalogue import default_catalogue
from specs.meta import MetaFormatError, PointMeta, decode_meta
from specs.records import Quality, Reading, Record, iso_time
from specs.status import GatewayStatus
from tests.support.collector_client import BASE_TIME, SimGateway, sim_gateway
from tests.support.collector_env import register
from tests.support.postgres import sql_rows

A = sim_gateway(1, district="360100")
B = sim_gateway(2, district="360100")
C = dataclasses.replace(
    B, district="110101", gateway=f"{B.enterprise}-GW02", key=sim_gateway(3, "110101").key
)
TOKENS = (
    ApiToken("province", "all-token", ("*",)),
    ApiToken("nanchang", "nc-token", ("360100",)),
)
NOW = BASE_TIME + 1000
WINDOW = {"from": iso_time(BASE_TIME), "to": iso_time(BASE_TIME + 600)}
LEVEL, PRESSURE = "T001-LT-01", "T001-PT-01"
SCHEMA = Path(__file__).parents[2] / "specs" / "schemas" / "meta.schema.json"


def _reading(point: str, t: float, value: float) -> Reading:
    quota, unit = ("WHP-LT", "m") if point == LEVEL else ("WHP-PT", "MPa")
    return Reading(point, quota, iso_time(BASE_TIME + t), value, unit, Quality.GOOD)


def _meta(gateway: SimGateway, polls: dict[str, float]) -> bytes:
    quotas = {LEVEL: ("WHP-LT", "m"), PRESSURE: ("WHP-PT", "MPa")}
    return gateway.meta(
        [
            PointMeta(point, *quotas[point], point, "dev-1", {}, poll=poll)
            for point, poll in polls.items()
        ],
        issued_at=BASE_TIME - 1000,
    )


def _status(*, online: bool, at: float) -> bytes:
    return GatewayStatus(online=online, t=BASE_TIME + at).encode()


@dataclasses.dataclass
class Arrivals:
    """Messages by arrival time (seconds after BASE), ingested in that order."""

    messages: list[tuple[float, SimGateway, str, bytes]] = dataclasses.field(default_factory=list)

    def add(self, at: float, gateway: SimGateway, topic: str, payload: bytes) -> None:
        self.messages.append((at, gateway, topic, payload))

    def chain(self, gateway: SimGateway, blocks: list[tuple[float, list[Record]]]) -> None:
        """Blocks seq 1.. of `gateway`, chained, each arriving at its time."""
        prev = GENESIS
        for seq, (at, records) in enumerate(blocks, start=1):
            payload = gateway.block(seq, records=records, prev=prev)
            prev = block_hash(payload)
            self.add(at, gateway, gateway.topics.block, payload)

    def heartbeats(self, gateway: SimGateway, start: float, stop: float) -> None:
        for at in range(int(start), int(stop), 30):
            self.add(at, gateway, gateway.topics.status, _status(online=True, at=at))


def _arrivals() -> Arrivals:
    arrivals = Arrivals()
    blocks: list[tuple[float, list[Record]]] = []
    for minute in (0, 1, 2, 3, 6, 7, 8, 9):
        start = 60.0 * minute
        records: list[Record] = [
            _reading(point, start + 10 * step, step)
            for step in range(6)
            for point in (LEVEL, PRESSURE)
        ]
        arrives = start + 50 + (90 if minute == 1 else 1)
        blocks.append((arrives, records))
    arrivals.chain(A, blocks)
    arrivals.add(0, A, A.topics.meta, _meta(A, {LEVEL: 10, PRESSURE: 10}))
    arrivals.heartbeats(A, 0, 240)
    arrivals.add(240, A, A.topics.status, _status(online=False, at=240))
    arrivals.heartbeats(A, 360, 600)
    arrivals.chain(B, [(60.0 * m + 5, [_reading(LEVEL, 60.0 * m, m)]) for m in range(10)])
    arrivals.add(0, B, B.topics.meta, _meta(B, {LEVEL: 60}))
    arrivals.heartbeats(B, 0, 600)
    arrivals.add(-1000, C, C.topics.meta, _meta(C, {LEVEL: 30}))
    return arrivals


async def _fill(storage: Storage) -> None:
    grants: dict[str, KeyGrant] = {}
    for gateway in (A, B, C):
        await register(storage, gateway)
        owner, key = gateway.registration()
        grants[key.kid] = KeyGrant(key, owner)
    for at, _, topic, payload in sorted(_arrivals().messages, key=lambda m: m[0]):
        gateway = next(g for g in (A, B, C) if f"/{g.gateway}/" in topic)
        message = Inbound(topic, payload, tuple(gateway.sign(payload)), BASE_TIME + at)
        batch = dataclasses.replace(
            plan_batch([message], grants, default_catalogue()), presence_window=60.0
        )
        assert not batch.audits
        await storage.ingest(batch)


@pytest.fixture
async def client(storage_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with open_storage(storage_url) as storage:
        assert isinstance(storage, QualityStats)
        await _fill(storage)
        async with _api(storage) as http:
            yield http


@contextlib.asynccontextmanager
async def _api(storage: Storage, now: float = NOW) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(storage, TOKENS, offline_after=60, clock=lambda: now)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://collector") as http:
        yield http


async def _quality(
    client: httpx.AsyncClient, bearer: str = "all-token", status: int = 200, /, **params: str
) -> dict[str, Any]:
    response = await client.get(
        "/v1/quality", params=params, headers={"Authorization": f"Bearer {bearer}"}
    )
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    if status != 200:
        assert response.headers["content-type"] == "application/problem+json"
    return body


def _figures(
    gateways: int,
    rates: tuple[float | None, float | None, float | None],
    counts: tuple[int, int, int],
) -> dict[str, Any]:
    """An item's figures: (online, completeness, timeliness), (expected, received, late)."""
    return {
        "gateways": gateways,
        "online_rate": rates[0],
        "completeness": rates[1],
        "timeliness": rates[2],
        "expected": counts[0],
        "received": counts[1],
        "late": counts[2],
    }


A_FIGURES = _figures(1, (0.8, 0.8, 0.875), (120, 96, 12))
B_FIGURES = _figures(1, (1.0, 1.0, 1.0), (10, 10, 0))
C_FIGURES = _figures(1, (0.0, 0.0, None), (20, 0, 0))


async def test_per_gateway_figures_match_the_hand_computed_ones(
    client: httpx.AsyncClient,
) -> None:
    body = await _quality(client, **WINDOW)
    assert body == {
        "items": [
            {"gateway": A.gateway, **A_FIGURES},
            {"gateway": B.gateway, **B_FIGURES},
            {"gateway": C.gateway, **C_FIGURES},
        ],
        "next": None,
    }


async def test_a_poll_period_near_zero_counts_a_bounded_number_of_readings(
    storage_url: str,
) -> None:
    """Found by a hostile tester: a signed meta with `poll: 1e-300` (above 0, so taken) made
    every /v1/quality over its gateway fail: 'bigint out of range' on PostgreSQL, 'integer
    overflow' on SQLite (a 500). A point owes at most MAX_EXPECTED readings per window."""
    async with open_storage(storage_url) as storage:
        await _fill(storage)
        meta = C.meta(
            [
                PointMeta(LEVEL, "WHP-LT", "m", LEVEL, "dev-1", {}, poll=1e-300),
                PointMeta(PRESSURE, "WHP-PT", "MPa", PRESSURE, "dev-1", {}, poll=1e-300),
            ],
            issued_at=BASE_TIME - 500,
        )
        owner, key = C.registration()
        message = Inbound(C.topics.meta, meta, tuple(C.sign(meta)), BASE_TIME - 500)
        batch = plan_batch([message], {key.kid: KeyGrant(key, owner)}, default_catalogue())
        assert not batch.audits
        await storage.ingest(batch)
        async with _api(storage) as http:
            body = await _quality(http, **WINDOW)
            [c_item] = [item for item in body["items"] if item["gateway"] == C.gateway]
            assert c_item["expected"] == 2 * MAX_EXPECTED
            grouped = await _quality(http, group="district", **WINDOW)
            assert {item["district"]: item["expected"] for item in grouped["items"]} == {
                C.district: 2 * MAX_EXPECTED,
                A.district: 130,
            }


async def test_a_reading_stamped_ahead_of_the_collector_counts_in_no_window(
    storage_url: str,
) -> None:
    """Found by today's review of 5703bb6: a reading stamped 30 days past the collector's
    clock (flagged ahead_of_collector, out of latest, rollups and every `every=` bucket) was
    counted received in its future window: once that time came, C's window showed a reading
    its gateway had not sent then (1 of 20). It counts in no window; the current one holds
    what it did, C's current reading only."""
    future = BASE_TIME + 30 * DAY
    async with open_storage(storage_url) as storage:
        await _fill(storage)
        records: list[Record] = [_reading(LEVEL, 300, 1.0), _reading(LEVEL, 30 * DAY, 9.0)]
        payload = C.block(1, records=records, prev=GENESIS)
        owner, key = C.registration()
        message = Inbound(C.topics.block, payload, tuple(C.sign(payload)), BASE_TIME + 305)
        await storage.ingest(
            plan_batch([message], {key.kid: KeyGrant(key, owner)}, default_catalogue())
        )
        flagged = "SELECT count(*) FROM readings WHERE flags LIKE '%ahead_of_collector%'"
        assert await sql_rows(storage_url, flagged) == [(1,)]
        later = {"from": iso_time(future - 300), "to": iso_time(future + 300)}
        async with _api(storage, future + 1000) as http:
            ahead = await _quality(http, gateway=C.gateway, **later)
            current = await _quality(http, **WINDOW)
    (item,) = ahead["items"]
    assert (item["expected"], item["received"], item["late"]) == (20, 0, 0)
    counts = {i["gateway"]: (i["expected"], i["received"], i["late"]) for i in current["items"]}
    assert counts == {A.gateway: (120, 96, 12), B.gateway: (10, 10, 0), C.gateway: (20, 1, 0)}


async def test_groups_add_up_their_gateways(client: httpx.AsyncClient) -> None:
    enterprises = await _quality(client, group="enterprise", **WINDOW)
    assert enterprises["items"] == [
        {"enterprise": A.enterprise, **A_FIGURES},
        {"enterprise": B.enterprise, **_figures(2, (0.5, round(10 / 30, 6), 1.0), (30, 10, 0))},
    ]
    districts = await _quality(client, group="district", **WINDOW)
    assert districts["items"] == [
        {"district": "110101", **C_FIGURES},
        {
            "district": "360100",
            **_figures(2, (0.9, round(106 / 130, 6), round(94 / 106, 6)), (130, 106, 12)),
        },
    ]


async def test_filters_pick_the_gateways_that_count(client: httpx.AsyncClient) -> None:
    by_enterprise = await _quality(client, enterprise=B.enterprise, **WINDOW)
    assert [item["gateway"] for item in by_enterprise["items"]] == [B.gateway, C.gateway]
    by_district = await _quality(client, district="110101", group="enterprise", **WINDOW)
    assert by_district["items"] == [{"enterprise": B.enterprise, **C_FIGURES}]
    one = await _quality(client, gateway=A.gateway, group="district", **WINDOW)
    assert one["items"] == [{"district": "360100", **A_FIGURES}]
    assert (await _quality(client, gateway="nobody", **WINDOW))["items"] == []


async def test_a_token_sees_only_its_districts_even_inside_a_group(
    client: httpx.AsyncClient,
) -> None:
    mine = await _quality(client, "nc-token", **WINDOW)
    assert [item["gateway"] for item in mine["items"]] == [A.gateway, B.gateway]
    enterprises = await _quality(client, "nc-token", group="enterprise", **WINDOW)
    # Enterprise 2's gateway in district 110101 is not this token's to count.
    assert enterprises["items"][1] == {"enterprise": B.enterprise, **B_FIGURES}
    districts = await _quality(client, "nc-token", group="district", **WINDOW)
    assert [item["district"] for item in districts["items"]] == ["360100"]
    assert (await _quality(client, "nc-token", district="110101", **WINDOW))["items"] == []


async def test_pages_follow_the_cursor(client: httpx.AsyncClient) -> None:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(4):
        params = {"limit": "1", **WINDOW} | ({"cursor": cursor} if cursor else {})
        page = await _quality(client, **params)
        seen.extend(item["gateway"] for item in page["items"])
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [A.gateway, B.gateway, C.gateway]
    first = await _quality(client, limit="1", group="district", **WINDOW)
    rest = await _quality(client, cursor=first["next"], group="district", **WINDOW)
    assert [i["district"] for i in first["items"] + rest["items"]] == ["110101", "360100"]
    # A cursor belongs to its grouping.
    await _quality(client, "all-token", 400, cursor=first["next"], group="gateway", **WINDOW)


async def test_the_window_defaults_to_the_last_day_and_stops_at_now(
    client: httpx.AsyncClient,
) -> None:
    day = await _quality(client, gateway=A.gateway)
    (item,) = day["items"]
    assert (item["expected"], item["received"], item["late"]) == (2 * 8640, 96, 12)
    # Live 480 s in the ten minutes, and 51 s more after them (the last block's window).
    assert item["online_rate"] == round((480 + 51) / 86400, 6)
    ahead = await _quality(
        client, gateway=A.gateway, **{"from": WINDOW["from"], "to": iso_time(NOW + 1000)}
    )
    (item,) = ahead["items"]
    assert item["online_rate"] == round((480 + 51) / 1000, 6)  # of the 1000 s up to now
    assert item["expected"] == 2 * 100
    # From after now, `to` defaulting to now: no window.
    later = await _quality(client, "all-token", 400, **{"from": iso_time(NOW + 10)})
    assert "later than from" in later["detail"]


@pytest.mark.parametrize(
    ("params", "status", "detail"),
    [
        ({"group": "planet"}, 422, "group"),
        ({"from": "yesterday"}, 400, "from:"),
        ({"to": "2026-05-28T08:00:00"}, 400, "to:"),
        (
            {"from": "2026-05-28T08:00:00+08:00", "to": "2026-05-28T07:00:00+08:00"},
            400,
            "later than from",
        ),
        ({"limit": "0"}, 422, "limit"),
        ({"cursor": "not-a-cursor"}, 400, "cursor"),
    ],
)
async def test_bad_parameters_are_problems(
    client: httpx.AsyncClient, params: dict[str, str], status: int, detail: str
) -> None:
    body = await _quality(client, "all-token", status, **params)
    assert detail in body["detail"]
    assert set(body) == {"type", "title", "status", "detail"}


async def test_no_token_no_quality(client: httpx.AsyncClient) -> None:
    await _quality(client, "wrong-token", 401)


async def test_two_collectors_keep_one_presence_per_gateway(postgres_url: str) -> None:
    def heartbeat(at: float) -> IngestBatch:
        return IngestBatch(
            statuses=[StatusUpdate(A.gateway, online=True, at=BASE_TIME + at)],
            presence_window=60.0,
        )

    async with open_storage(postgres_url) as one, open_storage(postgres_url) as other:
        await register(one, A)
        # Turn about: each extends the interval the other wrote.
        for storage, at in ((one, 0.0), (other, 30.0), (one, 50.0), (other, 200.0)):
            await storage.ingest(heartbeat(at))
        # At once, on connections of their own: the gateway's lock orders them.
        for at in range(300, 400, 10):
            await asyncio.gather(one.ingest(heartbeat(at)), other.ingest(heartbeat(at + 5)))
        held = await sql_rows(
            postgres_url,
            "SELECT since - ?, until - ? FROM presence ORDER BY since",
            BASE_TIME,
            BASE_TIME,
        )
        assert held == [(0.0, 110.0), (200.0, 260.0), (300.0, 455.0)]
        window = {"from": iso_time(BASE_TIME), "to": iso_time(BASE_TIME + 600)}
        answers = []
        for storage in (one, other):
            async with _api(storage) as http:
                answers.append(await _quality(http, gateway=A.gateway, **window))
    assert answers[0] == answers[1]
    assert answers[0]["items"][0]["online_rate"] == round((110 + 60 + 155) / 600, 6)


async def test_presence_stays_as_long_as_the_readings_it_qualifies(storage_url: str) -> None:
    """Found in review of f96423a: presence went row by row at raw_days while readings go by
    whole month, so up to a month of stored readings had no presence: with the cutoff at
    BASE + 300 (inside the window, May still kept) A's first interval [0, 300) went and its
    online rate fell from 0.8 to 0.4 with all 96 readings still counted."""
    policy = RetentionPolicy(raw_days=45)
    async with open_storage(storage_url) as storage:
        await _fill(storage)
        await prune_storage(storage_url, policy, BASE_TIME + 300 + 45 * DAY)
        async with _api(storage) as http:
            body = await _quality(http, **WINDOW)
    assert body["items"] == [
        {"gateway": A.gateway, **A_FIGURES},
        {"gateway": B.gateway, **B_FIGURES},
        {"gateway": C.gateway, **C_FIGURES},
    ]


async def test_an_interval_across_the_kept_months_start_keeps_its_young_part(
    storage_url: str,
) -> None:
    june = month_start(next_month(month_of(BASE_TIME)))

    def heartbeat(at: float) -> IngestBatch:
        return IngestBatch(
            statuses=[StatusUpdate(A.gateway, online=True, at=june + at)], presence_window=60.0
        )

    async with open_storage(storage_url) as storage:
        await register(storage, A)
        for at in (-1000, *range(-90, 120, 30)):
            await storage.ingest(heartbeat(at))
        held = "SELECT since - ?, until - ? FROM presence ORDER BY since"
        assert await sql_rows(storage_url, held, june, june) == [(-1000, -940), (-90, 150)]
        # June is the oldest month kept: May's interval goes, the one across June 1 is cut there.
        await prune_storage(storage_url, RetentionPolicy(raw_days=45), june + 50 * DAY)
        assert await sql_rows(storage_url, held, june, june) == [(0, 150)]
        async with _api(storage, june + 1000) as http:
            body = await _quality(
                http, gateway=A.gateway, **{"from": iso_time(june), "to": iso_time(june + 300)}
            )
    assert body["items"][0]["online_rate"] == 0.5


def test_the_meta_carries_each_points_poll_period() -> None:
    with_poll = _meta(A, {LEVEL: 10, PRESSURE: 0.5})
    decoded = decode_meta(with_poll)
    assert [p.poll for p in decoded.points] == [10.0, 0.5]
    schema = Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    assert not list(schema.iter_errors(json.loads(with_poll)))
    # Without one, the point has no `poll` key at all: older messages keep their bytes.
    without = A.meta([PointMeta(LEVEL, "WHP-LT", "m", "level", "dev-1", {})])
    assert "poll" not in json.loads(without)["points"][0]
    assert decode_meta(without).points[0].poll is None
    body = json.loads(with_poll)
    for bad in (0, -1, "10s", True):
        body["points"][0]["poll"] = bad
        with pytest.raises(MetaFormatError, match="poll"):
            decode_meta(json.dumps(body).encode())
        assert list(schema.iter_errors(body))


def test_the_agent_describes_each_point_with_its_devices_poll_period() -> None:
    config = load_site_config(Path(__file__).parents[2] / "configs" / "tankfarm.yaml")
    polls = {device.id: device.poll for device in config.devices}
    meta = gateway_meta(identity_of(config), resolve_points(config), issued_at=0, polls=polls)
    devices = {p.point: p.device for p in meta.points}
    assert meta.points
    assert all(p.poll == polls[devices[p.point]] for p in meta.points)
