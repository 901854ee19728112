"""Forged cursors are 400s, never 500s, on every endpoint that pages, on both backends.

Found by review earlier (0edc60c): a cursor holding an integer past 64 bits, or JSON nested
thousands deep, reached the database (or the parser's recursion limit) and answered 500.
`decode_cursor` is tested alone in tests/unit/test_collector_core.py; here every paging route
is asked with such cursors, including ones of the right list and shape.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.collector_api import assert_problem, auth
from tests.support.served_api import seeded_client

# (path, extra query, cursor kind, a valid-looking key of the right shape)
PAGED = [
    ("/v1/gateways", {}, "gateways", ["g"]),
    ("/v1/points", {}, "points", ["g", "p"]),
    ("/v1/latest", {}, "latest", ["g", "p"]),
    ("/v1/readings", {}, "readings", ["g", "p", 1.0, 1]),
    ("/v1/readings", {"every": "1m"}, "buckets", ["g", "p", 60.0, 60, 0]),
    ("/v1/alarms", {}, "alarms", [1.0, "g", "a"]),
    ("/v1/gaps", {}, "gaps", ["g", 1]),
    ("/v1/quality", {}, "quality-gateway", ["g"]),
    ("/v1/quality", {"group": "district"}, "quality-district", ["g"]),
]


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _forgeries(kind: str, key: list[object]) -> list[str]:
    """Cursors of list `kind` that no page of it ever made."""
    forged_keys = [
        [*key[:-1], 2**70],
        [2**70, *key[1:]],
        [-(2**70) if isinstance(v, int) else v for v in key],
        [1e300 if isinstance(v, float) else v for v in key],
    ]
    return [
        *(_cursor(json.dumps([kind, forged])) for forged in forged_keys if forged != key),
        _cursor("[" * 2000 + "]" * 2000),
        _cursor(f'["{kind}",' + "[" * 2000 + "]" * 2000 + "]"),
        _cursor(json.dumps([kind, [*key, "extra"]])),
        _cursor(json.dumps(["not-" + kind, key])),
        "%%%",
        "A" * 5000,
    ]


@pytest.fixture
async def client(storage_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with seeded_client(storage_url) as http:
        yield http


@pytest.mark.parametrize(("path", "query", "kind", "key"), PAGED, ids=str)
async def test_forged_cursors_are_400(
    client: httpx.AsyncClient, path: str, query: dict[str, str], kind: str, key: list[object]
) -> None:
    for cursor in _forgeries(kind, key):
        answer = await client.get(path, params={**query, "cursor": cursor}, headers=auth())
        assert_problem(answer, 400)


@pytest.mark.parametrize(("path", "query", "kind", "key"), PAGED, ids=str)
async def test_the_key_shape_is_one_a_page_takes(
    client: httpx.AsyncClient, path: str, query: dict[str, str], kind: str, key: list[object]
) -> None:
    # The forgeries above differ from a cursor the list takes only where they are forged.
    cursor = _cursor(json.dumps([kind, key]))
    answer = await client.get(path, params={**query, "cursor": cursor}, headers=auth())
    assert answer.status_code == 200, answer.text
