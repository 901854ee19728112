"""`/docs` works with no internet: the page names only local assets, and each is served.

The docs need a token like the rest of the API (tests/security/test_api_docs_auth.py shows
that they refuse a request without one); here the client is an operator who has one.
On SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from collector.api.docs import swagger_ui_folder
from collector.storage import open_storage
from tests.support.collector_api import auth, serve

ASSET_REFERENCE = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)["']""")


@pytest.fixture
async def client(storage_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with open_storage(storage_url) as storage, serve(storage) as http:
        http.headers.update(auth("nc-token"))  # any valid token opens the docs
        yield http


async def test_docs_name_only_local_assets_and_serve_each(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    references = ASSET_REFERENCE.findall(page.text)
    assert len(references) >= 3  # script, stylesheet, icon
    assert "//" not in page.text.replace("://collector", "")  # no URL of another host at all
    for reference in references:
        assert reference.startswith("/docs/assets/"), reference
        asset = await client.get(reference)
        assert asset.status_code == 200, reference
        assert asset.content, reference
    assert "/openapi.json" in page.text
    assert '"validatorUrl": null' in page.text  # the online validator badge is off


async def test_the_swagger_ui_renders_openapi_3_1(client: httpx.AsyncClient) -> None:
    # FastAPI writes OpenAPI 3.1, which only Swagger UI 5 renders.
    assert (await client.get("/openapi.json")).json()["openapi"].startswith("3.1")
    bundle = (await client.get("/docs/assets/swagger-ui-bundle.js")).text
    assert "OAS31" in bundle


async def test_only_the_allowed_assets_are_served(client: httpx.AsyncClient) -> None:
    assert (swagger_ui_folder() / "index.html").exists() or (
        swagger_ui_folder() / "LICENSE"
    ).exists()
    for name in ("index.html", "LICENSE", "..%2F__init__.py", "swagger-ui.js.map"):
        response = await client.get(f"/docs/assets/{name}")
        assert response.status_code == 404, name
        assert response.headers["content-type"] == "application/problem+json"


async def test_redoc_is_not_offered(client: httpx.AsyncClient) -> None:
    assert (await client.get("/redoc")).status_code == 404
