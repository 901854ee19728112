"""A SQLite read that fails says StorageError wherever it is made: the API answers 503.

Real collector on a SQLite file, real Mosquitto, real HTTP; the reads fail for real: another
sqlite3 connection renames a table away (a lock cannot keep a WAL reader out) and back.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import httpx
import pytest
from structlog.testing import capture_logs

from collector.config import load_collector_config
from collector.runtime import RunningCollector, run_collector
from collector.storage.base import StorageError
from collector.storage.capabilities import TokenStore
from collector.storage.sqlite.store import SqliteStorage
from collector.tokens import StoredToken, new_secret, secret_hash
from tests.support.broker import Broker
from tests.support.collector_api import assert_problem
from tests.support.collector_client import gateway_link, sim_gateway
from tests.support.collector_env import keyed_collector_config, register
from tests.support.feed_client import WAIT, open_stream

NANCHANG = sim_gateway(1, district="360100")
AUTH: Final = {"Authorization": "Bearer all-token"}


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "collector.db"


@pytest.fixture
async def collector(
    broker: Broker, tmp_path: Path, database: Path
) -> AsyncIterator[RunningCollector]:
    config = load_collector_config(
        await keyed_collector_config(
            tmp_path,
            broker_port=broker.port,
            tokens=(("province", "all-token", ("*",)),),
            storage_url=f"sqlite:///{database}",
        )
    )
    async with run_collector(config) as running:
        await asyncio.wait_for(running.wait_connected(), WAIT)
        await register(running.storage, NANCHANG)
        yield running


@contextmanager
def table_away(database: Path, table: str) -> Iterator[None]:
    """`table` renamed away by another connection while the block runs, then put back."""
    other = sqlite3.connect(database, isolation_level=None)
    try:
        other.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
        try:
            yield
        finally:
            other.execute(f"ALTER TABLE {table}_away RENAME TO {table}")
    finally:
        other.close()


async def test_registry_and_bucket_reads_that_fail_answer_503_and_the_collector_stays_up(
    collector: RunningCollector, database: Path
) -> None:
    """The defect (5e3b1bf left it): the registry reads (gateway and key lookups), the bucket
    queries, the audit head and the token reads ran on the reader connection outside
    `_reading`, so their sqlite3 errors went up raw: a plain-text 500 from the API."""
    paths = (
        f"/v1/audit/verify?gateway={NANCHANG.gateway}",  # find_gateways
        "/v1/readings?every=1h",  # the bucket queries
    )
    async with httpx.AsyncClient(base_url=collector.api_url) as http:
        with capture_logs() as logs, table_away(database, "gateways"):
            answers = [await http.get(path, headers=AUTH) for path in paths]
        for answer in answers:
            body = assert_problem(answer, 503)
            assert "gateways" not in body["detail"]  # nothing of the database in the answer
            assert answer.headers.get("retry-after") == "5"
        failed = [e for e in logs if e["event"] == "api_storage_failed"]
        assert [e["path"] for e in failed] == ["/v1/audit/verify", "/v1/readings"]
        assert all("no such table: gateways" in e["error"] for e in failed)
        # The table back, the same reads answer.
        for path in paths:
            assert (await http.get(path, headers=AUTH)).status_code == 200
    assert not [task.get_name() for task in collector.tasks if task.done()]


READS: Final = {
    "gateways": lambda s: s.gateways(),
    "find_gateways": lambda s: s.find_gateways([NANCHANG.gateway]),
    "keys": lambda s: s.keys(),
    "grants": lambda s: s.grants(["kid"]),
    "audit_head": lambda s: s.audit_head(),
    "audit_rows": lambda s: s.audit_rows(after=None, limit=10),
    "api_tokens": lambda s: s.api_tokens(),
    "token_by_hash": lambda s: s.token_by_hash("0" * 64),
}
TABLES: Final = {
    "gateways": "gateways",
    "find_gateways": "gateways",
    "keys": "gateway_keys",
    "grants": "gateway_keys",
    "audit_head": "audit",
    "audit_rows": "audit",
    "api_tokens": "api_tokens",
    "token_by_hash": "api_tokens",
}


@pytest.mark.parametrize("read", sorted(READS))
async def test_every_read_on_the_reader_connection_says_storage_error(
    tmp_path: Path, read: str
) -> None:
    """Each read the store makes outside the shared reads, failing for real, says StorageError
    naming what it read (the one translation), not sqlite3's own error."""
    database = tmp_path / "collector.db"
    storage = await SqliteStorage.open(database)
    try:
        with table_away(database, TABLES[read]), pytest.raises(StorageError) as caught:
            await READS[read](storage)
    finally:
        await storage.close()
    assert isinstance(caught.value.__cause__, sqlite3.Error)
    assert f"no such table: {TABLES[read]}" in str(caught.value)


WRITES: Final[dict[str, tuple[Callable[[SqliteStorage], Awaitable[object]], str]]] = {
    "registering a gateway": (lambda s: s.register(*NANCHANG.registration()), "gateways"),
    "adding an API token": (
        lambda s: s.add_token(StoredToken("t", ("*",), 0.0), secret_hash("s"), "test"),
        "api_tokens",
    ),
}


@pytest.mark.parametrize("action", sorted(WRITES))
async def test_a_write_that_fails_names_its_action(tmp_path: Path, action: str) -> None:
    """The store's write transaction (`_writing`) names the write in its error, as the
    DialectStore contract says and PostgreSQL's does: it said "transaction failed" alone."""
    database = tmp_path / "collector.db"
    write, table = WRITES[action]
    storage = await SqliteStorage.open(database)
    try:
        with table_away(database, table), pytest.raises(StorageError) as caught:
            await write(storage)
    finally:
        await storage.close()
    assert str(caught.value).startswith(f"{action} failed: ")
    assert f"no such table: {table}" in str(caught.value)


async def test_a_token_lookup_that_fails_answers_503_and_a_stream_ends_cleanly_to_resume(
    broker: Broker, collector: RunningCollector, database: Path
) -> None:
    """The defect (5e3b1bf left it): the token check runs in the Admission middleware, outside
    the routes' exception handlers, so a StorageError there was a plain-text 500; and a stream
    whose read failed (here its token check on waking) raised out of the response after its
    headers: uvicorn dropped the connection mid-chunk and logged a traceback. Now the
    middleware answers 503 problem as the routes do, and the stream logs the failure and ends
    its response cleanly: the client reconnects with Last-Event-ID and misses nothing."""
    secret = new_secret()
    token = StoredToken("stored", ("*",), created_at=0.0)
    assert isinstance(collector.storage, TokenStore)
    await collector.storage.add_token(token, secret_hash(secret), "test")
    auth = {"Authorization": f"Bearer {secret}"}
    async with (
        httpx.AsyncClient(base_url=collector.api_url) as http,
        gateway_link(broker.port, NANCHANG) as link,
    ):
        async with open_stream(collector.api_url, bearer=secret) as stream:
            (start,) = await stream.take(1)
            with capture_logs() as logs, table_away(database, "api_tokens"):
                answer = await http.get("/v1/gateways", headers=auth)
                # A stream (re)opened meanwhile: EventSource gives up for good on a 503.
                reopened = await http.get("/v1/stream", headers=auth)
                await link.send(1)  # its commit wakes the stream, whose token check fails
                assert (await link.next_ack()).ack.acked_through == 1
                await asyncio.wait_for(stream.ended.wait(), WAIT)
        body = assert_problem(answer, 503)
        assert "api_tokens" not in body["detail"]
        assert_problem(reopened, 503)
        # Said when to try again, as a 429 is (a client or the status page waits that long).
        assert (answer.headers.get("retry-after"), reopened.headers.get("retry-after")) == (
            "5",
            "5",
        )
        events = {e["event"]: e for e in logs if e["log_level"] != "debug"}
        failed = [e["path"] for e in logs if e["event"] == "api_storage_failed"]
        assert failed == ["/v1/gateways", "/v1/stream"]
        assert "no such table: api_tokens" in events["api_storage_failed"]["error"]
        assert "no such table: api_tokens" in events["stream_storage_failed"]["error"]
        # Resumed where it was: the reading committed while the stream failed arrives.
        async with open_stream(collector.api_url, bearer=secret, last_event_id=start.id) as again:
            (_, reading) = await again.take(2)
        assert reading.event == "reading"
        assert (await http.get("/v1/gateways", headers=auth)).status_code == 200
    assert not [task.get_name() for task in collector.tasks if task.done()]


async def test_a_csv_export_whose_first_read_fails_answers_503_not_a_cut_transfer(
    collector: RunningCollector, database: Path
) -> None:
    """The defect (11d6250 left it): with Accept: text/csv the first page was read only once
    the streamed response had sent its 200 headers, so a database failing that read cut the
    transfer (curl: (18) transfer closed; uvicorn: "Caught handled exception, but response
    already started") where the JSON answer is a 503 with Retry-After. Now the first page is
    read before the response starts: the same 503 problem, over real HTTP."""
    csv = {**AUTH, "Accept": "text/csv"}
    paths = {"/v1/readings": "readings", "/v1/readings?every=1h": "gateways"}
    async with httpx.AsyncClient(base_url=collector.api_url) as http:
        with capture_logs() as logs:
            answers = []
            for path, table in paths.items():
                with table_away(database, table):
                    answers.append(await http.get(path, headers=csv))
        for answer, table in zip(answers, paths.values(), strict=True):
            body = assert_problem(answer, 503)
            assert table not in body["detail"]
            assert answer.headers.get("retry-after") == "5"
        failed = [e["path"] for e in logs if e["event"] == "api_storage_failed"]
        assert failed == ["/v1/readings", "/v1/readings"]
        # The table back, the same exports stream their header.
        for path in paths:
            again = await http.get(path, headers=csv)
            assert again.status_code == 200
            assert again.text.startswith("gateway,")
    assert not [task.get_name() for task in collector.tasks if task.done()]


async def test_a_metrics_scrape_whose_read_fails_answers_the_shared_503(
    collector: RunningCollector, database: Path
) -> None:
    """The defect (11d6250 left it): /metrics answered its failed read with a 503 of its own,
    no Retry-After, and the database's error text (table names; on PostgreSQL its address) as
    the problem's detail. Now it is the 503 every failed read answers."""
    async with httpx.AsyncClient(base_url=collector.api_url) as http:
        with capture_logs() as logs, table_away(database, "gateways"):
            answer = await http.get("/metrics", headers=AUTH)
        body = assert_problem(answer, 503)
        assert "gateways" not in body["detail"]
        assert answer.headers.get("retry-after") == "5"
        failed = [e for e in logs if e["event"] == "api_storage_failed"]
        assert [e["path"] for e in failed] == ["/metrics"]
        assert "no such table: gateways" in failed[0]["error"]
        assert (await http.get("/metrics", headers=AUTH)).status_code == 200
