"""`/healthz`, the one route without a token, tells a stranger nothing about the database.

Found by a hostile tester: while the database did not answer, the anonymous `GET /healthz`
gave the storage error as its 503 detail: `ping failed (postgresql://postgres@127.0.0.1:5432/
<db>): database "<db>" does not exist`, the database's user, address and name (on SQLite, the
file's path). A load balancer needs only the status; the error goes to the collector's log.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from collector.storage import open_storage
from tests.support.collector_api import serve
from tests.support.postgres import PostgresDatabases


async def test_a_503_from_healthz_names_no_database_detail(
    postgres_databases: PostgresDatabases,
) -> None:
    url = postgres_databases.create()
    parts = urlsplit(url)
    async with open_storage(url) as storage, serve(storage) as http:
        postgres_databases.drop(url)  # WITH (FORCE): the pool's connections are cut
        answer = await http.get("/healthz")
    assert answer.status_code == 503
    assert answer.json()["detail"] == "the database does not answer"
    for secret in (parts.hostname, parts.username, parts.path.strip("/"), "postgresql"):
        assert secret
        assert secret not in answer.text
