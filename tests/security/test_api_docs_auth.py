"""Only `/healthz` answers without a token (DESIGN section 8), the API's docs included.

Found by a hostile tester: `/docs`, `/redoc` and `/openapi.json` answered without a token, so
anyone reaching the port could read the whole API surface.

How an operator reads the docs: a program (curl) sends `Authorization: Bearer <token>`; a
browser, which cannot add that header to a page load, is asked for a user name and password
(HTTP Basic) by the docs pages and sends a token as the password (any user name). The browser
then sends the same credentials with the page's own fetch of `/openapi.json` and its assets.
Basic is taken on the docs pages only; `/v1` wants a bearer token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from collector.storage import open_storage
from tests.support.collector_api import assert_problem, auth, basic_auth, serve

DOCS_PAGES = ("/docs", "/openapi.json", "/docs/assets/swagger-ui.css")


@pytest.fixture
async def client(tmp_path: object) -> AsyncIterator[httpx.AsyncClient]:
    async with open_storage(f"sqlite:///{tmp_path}/c.db") as storage, serve(storage) as http:
        yield http


@pytest.mark.parametrize("path", [*DOCS_PAGES, "/redoc", "/no/such/page", "/v1/gateways"])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        auth("wrong-token"),
        basic_auth("wrong-token"),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Bearer"},
    ],
    ids=["none", "wrong-bearer", "wrong-basic", "broken-basic", "empty-bearer"],
)
async def test_nothing_but_healthz_answers_without_a_valid_token(
    client: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> None:
    answer = await client.get(path, headers=headers)
    assert_problem(answer, 401)
    assert "/openapi" not in answer.text
    assert "swagger" not in answer.text.lower()


async def test_healthz_stays_open(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}


@pytest.mark.parametrize("path", DOCS_PAGES)
async def test_a_docs_page_asks_a_browser_for_the_token_as_a_password(
    client: httpx.AsyncClient, path: str
) -> None:
    answer = await client.get(path)
    assert answer.headers["www-authenticate"].startswith("Basic realm=")


@pytest.mark.parametrize("path", DOCS_PAGES)
@pytest.mark.parametrize(
    "headers",
    [auth("nc-token"), basic_auth("nc-token"), basic_auth("nc-token", user="")],
    ids=["bearer", "basic", "basic-no-user"],
)
async def test_a_token_opens_the_docs_by_bearer_or_as_a_basic_password(
    client: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> None:
    answer = await client.get(path, headers=headers)
    assert answer.status_code == 200, answer.text


async def test_the_password_is_all_after_the_first_colon(client: httpx.AsyncClient) -> None:
    # RFC 7617: the user name ends at the first colon, the password may hold more.
    assert (
        await client.get("/docs", headers=basic_auth("nc-token", user="x:y"))
    ).status_code == 401
    assert (
        await client.get("/docs", headers=basic_auth("x:nc-token", user="u"))
    ).status_code == 401


async def test_the_api_itself_wants_a_bearer_token_not_basic(client: httpx.AsyncClient) -> None:
    answer = await client.get("/v1/gateways", headers=basic_auth("all-token"))
    body = assert_problem(answer, 401)
    assert "Bearer" in answer.headers["www-authenticate"]
    assert "bearer" in body["detail"].lower()
    assert (await client.get("/v1/gateways", headers=auth("all-token"))).status_code == 200


async def test_with_a_token_unknown_pages_are_404_as_before(client: httpx.AsyncClient) -> None:
    for path in ("/redoc", "/no/such/page"):
        assert_problem(await client.get(path, headers=auth("nc-token")), 404)
