"""Who may open the status page at `/`, and how its own requests to `/v1` are let in.

The page and its assets are browser pages like the docs: a token is needed, and a browser is
asked for it as a Basic password. The page then reads `/v1` and `/v1/stream` with those same
Basic credentials, which the API takes only from a request the browser marks same-origin
(`Sec-Fetch-Site`), so that a page of another site cannot spend them; anywhere else `/v1`
still wants a bearer token (tests/security/test_api_docs_auth.py). What a Basic token sees is
scoped by its districts like a bearer token's. That a browser really does all this is shown
in Chromium by tests/e2e/test_status_page.py.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from collector.storage import open_storage
from tests.support.collector_api import (
    BEIJING,
    NANCHANG,
    assert_problem,
    auth,
    basic_auth,
    level,
    serve,
    store_blocks,
)
from tests.support.collector_client import BASE_TIME
from tests.support.collector_env import register

PAGES = ("/", "/status/status.js", "/status/status.css")


def from_the_page(password: str) -> dict[str, str]:
    """What Chromium sends with the page's fetch: its cached Basic credentials, same-origin."""
    return {**basic_auth(password), "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with open_storage(f"sqlite:///{tmp_path}/c.db") as storage:
        for gateway in (NANCHANG, BEIJING):
            await register(storage, gateway)
            await store_blocks(storage, gateway, [[level(BASE_TIME, 1.0)]])
        async with serve(storage) as http:
            yield http


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize(
    "headers",
    [{}, basic_auth("wrong-token"), auth("wrong-token"), from_the_page("wrong-token")],
    ids=["none", "wrong-basic", "wrong-bearer", "wrong-same-origin"],
)
async def test_the_page_asks_a_browser_for_a_token_and_shows_nothing_without_one(
    client: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> None:
    answer = await client.get(path, headers=headers)
    assert_problem(answer, 401)
    assert answer.headers["www-authenticate"].startswith("Basic realm=")
    assert "EventSource" not in answer.text


@pytest.mark.parametrize("path", PAGES)
@pytest.mark.parametrize(
    "headers", [basic_auth("nc-token"), auth("nc-token")], ids=["basic", "bearer"]
)
async def test_a_token_opens_the_page_and_its_assets(
    client: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> None:
    answer = await client.get(path, headers=headers)
    assert answer.status_code == 200, answer.text
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    assert answer.headers["x-content-type-options"] == "nosniff"


async def test_the_page_names_only_its_own_assets(client: httpx.AsyncClient) -> None:
    page = (await client.get("/", headers=basic_auth("nc-token"))).text
    assert page.startswith("<!doctype html>")
    linked = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert sorted(linked) == ["/status/status.css", "/status/status.js", "data:,"]
    script = (await client.get("/status/status.js", headers=basic_auth("nc-token"))).text
    assert "/v1/stream" in script
    assert "http" not in script.replace('"http://www.w3.org/2000/svg"', "")


async def test_only_the_listed_assets_are_served(client: httpx.AsyncClient) -> None:
    for path in ("/status/status.html", "/status/..%2Fstatus_page.py", "/status/nope.js"):
        assert_problem(await client.get(path, headers=auth("nc-token")), 404)


async def test_the_pages_own_requests_to_v1_are_taken_by_basic_and_scoped(
    client: httpx.AsyncClient,
) -> None:
    district = await client.get("/v1/gateways", headers=from_the_page("nc-token"))
    assert district.status_code == 200, district.text
    assert [g["gateway"] for g in district.json()["items"]] == [NANCHANG.gateway]
    province = await client.get("/v1/gateways", headers=from_the_page("all-token"))
    assert {g["gateway"] for g in province.json()["items"]} == {
        NANCHANG.gateway,
        BEIJING.gateway,
    }


@pytest.mark.parametrize("site", ["cross-site", "same-site", "none", None])
async def test_basic_from_another_site_or_a_program_is_not_taken_on_v1(
    client: httpx.AsyncClient, site: str | None
) -> None:
    headers = basic_auth("all-token") | ({} if site is None else {"Sec-Fetch-Site": site})
    answer = await client.get("/v1/gateways", headers=headers)
    assert_problem(answer, 401)
    assert answer.headers["www-authenticate"] == "Bearer"
