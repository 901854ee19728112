"""`/healthz` says 503 (a problem document), not 500, when the database stops answering."""

from __future__ import annotations

from collector.storage import open_storage
from tests.support.collector_api import serve
from tests.support.postgres import PostgresDatabases


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
