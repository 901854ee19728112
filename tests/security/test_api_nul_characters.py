"""A NUL character in a query parameter is a 400, not a 500, on every endpoint and backend.

Found by fuzzing the API on PostgreSQL: PostgreSQL refuses NUL in text ("invalid byte
sequence for encoding UTF8: 0x00"), so `?gateway=%00` (or any text filter holding one)
reached the database and answered 500 on every endpoint. No stored name holds a NUL, so such
a filter is refused before it gets anywhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.collector_api import assert_problem, auth
from tests.support.served_api import seeded_client

TEXT_FILTERS = [
    ("/v1/points", "gateway"),
    ("/v1/points", "quota"),
    ("/v1/latest", "enterprise"),
    ("/v1/latest", "gateway"),
    ("/v1/readings", "gateway"),
    ("/v1/readings", "point"),
    ("/v1/alarms", "gateway"),
    ("/v1/gaps", "gateway"),
    ("/v1/quality", "gateway"),
    ("/v1/quality", "enterprise"),
    ("/v1/quality", "district"),
    ("/v1/audit/verify", "gateway"),
    ("/v1/stream", "gateway"),
    ("/v1/stream", "point"),
]


@pytest.fixture
async def client(storage_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with seeded_client(storage_url) as http:
        yield http


async def test_a_nul_in_a_text_filter_is_400(client: httpx.AsyncClient) -> None:
    for path, name in TEXT_FILTERS:
        for value in ("\x00", "a\x00b", "91360100MA0000001U-GW01\x00"):
            answer = await client.get(path, params={name: value}, headers=auth())
            body = assert_problem(answer, 400)
            assert "NUL" in body["detail"], (path, name)


async def test_a_nul_anywhere_in_the_query_is_400(client: httpx.AsyncClient) -> None:
    for query in ("tz=%00", "cursor=%00", "unknown=%00", "gateway=x&point=%00", "%00=x"):
        answer = await client.get(f"/v1/readings?{query}", headers=auth())
        assert_problem(answer, 400)
