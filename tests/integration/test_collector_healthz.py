"""`/healthz` says 503 (a problem document), not 500, when the database stops answering.

Load balancers ask it with other methods than GET: HAProxy's `option httpchk` sends OPTIONS by
default, many monitors send HEAD. Both used to get 405, which takes every collector out of
rotation; they get the same status as GET (HEAD without the body).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from collector.storage import open_storage
from tests.support.collector_api import auth, serve
from tests.support.postgres import PostgresDatabases
from tests.support.served_api import served_api


async def test_healthz_is_ok_then_503_when_the_database_is_gone(
    postgres_databases: PostgresDatabases,
) -> None:
    url = postgres_databases.create()
    async with open_storage(url) as storage, serve(storage) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        postgres_databases.drop(url)  # WITH (FORCE): the pool's connections are cut
        answer = await http.get("/healthz")
        assert answer.status_code == 503
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["status"] == 503
        # As every 503 of a database that does not answer (it used to have none).
        assert answer.headers.get("retry-after") == "5"


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS"])
async def test_a_load_balancers_check_method_gets_what_get_gets(
    postgres_databases: PostgresDatabases, method: str
) -> None:
    url = postgres_databases.create()
    async with open_storage(url) as storage, serve(storage) as http:
        answer = await http.request(method, "/healthz")
        assert answer.status_code == 200
        assert answer.content == (b"" if method == "HEAD" else b'{"status":"ok"}')
        postgres_databases.drop(url)
        assert (await http.request(method, "/healthz")).status_code == 503
        # Every other path keeps answering GET only.
        other = await http.request(method, "/v1/gateways", headers=auth())
        assert other.status_code == 405


async def test_options_says_which_methods_healthz_takes(
    postgres_databases: PostgresDatabases,
) -> None:
    """RFC 9110 (9.3.7): a successful OPTIONS names the methods of the resource in `Allow`."""
    url = postgres_databases.create()
    async with open_storage(url) as storage, serve(storage) as http:
        answer = await http.options("/healthz")
        assert answer.status_code == 200
        assert answer.headers["allow"] == "GET, HEAD, OPTIONS"


def test_the_openapi_document_gives_head_no_content(tmp_path: Path) -> None:
    """A HEAD answer carries no content (RFC 9110 9.3.2), and the served document says so.

    It gave `HEAD /healthz` the GET's JSON body (and the errors' problem documents), which
    clients and schema checks then expect in an answer that has none.
    """
    with served_api(f"sqlite:///{tmp_path / 'collector.db'}") as api:
        document = httpx.get(f"{api.url}/openapi.json", headers=auth()).json()
        head = httpx.head(f"{api.url}/healthz")
    assert (head.status_code, head.content) == (200, b"")
    heads = {path: item["head"] for path, item in document["paths"].items() if "head" in item}
    assert list(heads) == ["/healthz"]
    for code, response in heads["/healthz"]["responses"].items():
        assert "content" not in response, code
        assert response["description"], code
    assert set(heads["/healthz"]["responses"]) >= {"200", "503"}
    # GET keeps its body: the Health document.
    got = document["paths"]["/healthz"]["get"]["responses"]["200"]["content"]
    assert got == {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}
