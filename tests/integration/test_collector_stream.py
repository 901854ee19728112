"""`GET /v1/stream`: live server-sent events over a real HTTP server, on SQLite and PostgreSQL.

Most tests serve the API with uvicorn over a storage they fill through the ingest core and then
ring the commit signal, exactly as the ingest shell does after each commit; they run on a SQLite
file and on a PostgreSQL database. One runs the whole collector on a real broker, restarts it,
and resumes a stream across the restart. On PostgreSQL, two storages on one database stand for
two collectors: a stream served by one wakes for what the other commits (LISTEN/NOTIFY), and
concurrent commits of both reach it in commit order, none skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn

from collector.api.app import create_app
from collector.config import load_collector_config
from collector.feed.core import FeedPosition
from collector.feed.due import ActivationWindow
from collector.feed.wakeup import LocalCommitSignal
from collector.ingest.core import Inbound, plan_batch
from collector.model import AHEAD_ALLOWANCE, IngestBatch, KeyGrant, StatusUpdate
from collector.runtime import run_collector
from collector.storage import open_storage, prune_storage
from collector.storage.base import Storage
from collector.storage.capabilities import (
    AlarmActivations,
    CommitRelay,
    FeedJournal,
    relayed_commits,
)
from collector.storage.months import month_of, month_start, next_month
from collector.storage.postgres.locks import FEED_LOCK
from collector.storage.postgres.schema import SCHEMA_VERSION as POSTGRES_SCHEMA
from collector.storage.retention import DAY, RetentionPolicy
from collector.storage.sqlite import SCHEMA_VERSION
from specs.block import GENESIS, block_hash
from specs.catalogue import default_catalogue
from specs.records import AlarmEvent, GapReason, Quality, Reading, Record, iso_time
from tests.support.broker import Broker
from tests.support.collector_api import BEIJING, NANCHANG, TOKEN_ROWS, TOKENS
from tests.support.collector_client import (
    BASE_TIME,
    SimGateway,
    gap_record,
    gateway_link,
    key_grants,
)
from tests.support.collector_env import keyed_collector_config, register
from tests.support.feed_client import Message, open_stream
from tests.support.postgres import sql_execute, sql_rows
from tests.support.records import alarm_record

LEVEL, PRESSURE = "T001-LT-01", "T001-PT-01"
WAIT = 10.0  # seconds an expected event may take; the heartbeat below is far longer


async def _resume(
    base_url: str, last_event_id: str | None, missed: int, *, then: Callable[[], Awaitable[None]]
) -> list[Message]:
    """Reconnect after `last_event_id`: the hello names it, `missed` messages follow, then
    the two of the block `then()` delivers, and nothing more. Those messages, in order."""
    async with open_stream(base_url, last_event_id=last_event_id) as resumed:
        (hello,) = await resumed.take(1)
        assert hello.id == last_event_id
        again = await resumed.take(missed)
        await then()
        again += await resumed.take(2)
        assert not await resumed.quiet()
    return again


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Feed:
    """A served API over a storage, and the ingest steps the shell would take."""

    storage: Storage
    commits: LocalCommitSignal
    base_url: str
    payloads: dict[tuple[str, int], bytes] = field(default_factory=dict)

    def chain(self, gateway: SimGateway, records: Mapping[int, Sequence[Record]]) -> None:
        """Seal blocks 1..n of `gateway` (records per seq) chained as an agent would."""
        prev = GENESIS
        for seq in sorted(records):
            payload = gateway.block(seq, records=records[seq], prev=prev)
            self.payloads[(gateway.gateway, seq)] = payload
            prev = block_hash(payload)

    async def deliver(
        self, *blocks: tuple[SimGateway, int], statuses: Sequence[StatusUpdate] = ()
    ) -> None:
        """Ingest the blocks and statuses as one batch, then ring the commit signal."""
        messages = [
            Inbound(
                gateway.topics.block,
                self.payloads[(gateway.gateway, seq)],
                tuple(gateway.sign(self.payloads[(gateway.gateway, seq)])),
                BASE_TIME + seq,
            )
            for gateway, seq in blocks
        ]
        grants = key_grants(NANCHANG, BEIJING)
        batch = plan_batch(messages, grants, default_catalogue())
        assert not batch.audits
        await self.storage.ingest(IngestBatch(batch.blocks, statuses=statuses))
        self.commits.notify()

    async def get(self, path: str, **params: str) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=self.base_url) as http:
            response = await http.get(
                path, params=params, headers={"Authorization": "Bearer all-token"}
            )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["items"]
        return items


@contextlib.asynccontextmanager
async def _served(
    url: str,
    heartbeat: float = 60.0,
    *,
    registered: bool = False,
    allowance: float = AHEAD_ALLOWANCE,
) -> AsyncIterator[Feed]:
    """Serve the API over the storage at `url`, its commit signal relayed as the runtime does.

    `registered`: the gateways are registered in the database already (by another storage).
    `allowance`: the collector's `ingest.ahead_allowance`.
    """
    commits = LocalCommitSignal()
    async with open_storage(url) as storage, relayed_commits(storage, commits):
        assert isinstance(storage, FeedJournal)
        if not registered:
            await register(storage, NANCHANG, BEIJING)
        app = create_app(
            storage,
            TOKENS,
            clock=lambda: BASE_TIME + 100,
            commits=commits,
            stream_heartbeat=heartbeat,
            ahead_allowance=allowance,
        )
        server = _Server(
            uvicorn.Config(
                app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=2
            )
        )
        with socket.create_server(("127.0.0.1", 0)) as sock:
            task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                await asyncio.sleep(0.01)
            try:
                yield Feed(storage, commits, f"http://127.0.0.1:{sock.getsockname()[1]}")
            finally:
                commits.close()
                server.should_exit = True
                await task


def _reading(point: str, t: float, value: float) -> Reading:
    quota, unit = ("WHP-LT", "m") if point == LEVEL else ("WHP-PT", "MPa")
    return Reading(point, quota, iso_time(t), value, unit, Quality.GOOD)


def _records(gateway: SimGateway, seq: int, *extra: Record) -> list[Record]:
    t = BASE_TIME + seq
    return [_reading(LEVEL, t, seq * 1.0), _reading(PRESSURE, t, seq * 10.0), *extra]


def _kinds(messages: Sequence[Message]) -> list[str | None]:
    return [m.event for m in messages]


def _position(message: Message) -> tuple[int, int]:
    assert message.id is not None
    readings, _, journal = message.id.partition(".")
    return int(readings.removeprefix("r")), int(journal.removeprefix("f"))


def _canonical(items: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted(json.dumps(item, sort_keys=True) for item in items)


async def test_events_come_live_in_commit_order_shaped_like_the_list_endpoints(
    storage_url: str,
) -> None:
    raise_t, clear_t = BASE_TIME + 1, BASE_TIME + 5
    async with _served(storage_url) as feed:
        feed.chain(
            NANCHANG,
            {
                1: _records(NANCHANG, 1, alarm_record("A-1", AlarmEvent.RAISE, raise_t)),
                2: _records(NANCHANG, 2),
                3: _records(NANCHANG, 3),
                4: [
                    _reading(LEVEL, BASE_TIME + 4, 4.0),
                    gap_record(4, lost=5, reason=GapReason.OUTBOX_FULL),
                    alarm_record("A-1", AlarmEvent.CLEAR, clear_t),
                ],
            },
        )
        feed.chain(BEIJING, {1: _records(BEIJING, 1)})
        async with open_stream(feed.base_url) as stream:
            (hello,) = await stream.take(1)
            assert (hello.id, hello.event, hello.data) == ("r0.f0", None, None)
            started = time.monotonic()
            await feed.deliver((NANCHANG, 1))
            first = await stream.take(3)
            # Woken by the commit, not by the 60 s re-read.
            assert time.monotonic() - started < WAIT
            assert _kinds(first) == ["reading", "reading", "alarm"]
            raised = await feed.get("/v1/alarms")
            assert first[2].body == raised[0]
            assert raised[0]["cleared_at"] is None
            await feed.deliver(
                (BEIJING, 1),
                statuses=[StatusUpdate(NANCHANG.gateway, online=True, at=BASE_TIME + 2)],
            )
            second = await stream.take(3)
            assert _kinds(second) == ["reading", "reading", "status"]
            assert second[2].body == {
                "gateway": NANCHANG.gateway,
                "enterprise": NANCHANG.enterprise,
                "district": NANCHANG.district,
                "online": True,
                "at": iso_time(BASE_TIME + 2),
            }
            # A heartbeat that says the same again is no change.
            await feed.deliver(
                statuses=[StatusUpdate(NANCHANG.gateway, online=True, at=BASE_TIME + 3)]
            )
            await feed.deliver((NANCHANG, 3))  # seq 2 missing: a hole opens
            third = await stream.take(3)
            assert _kinds(third) == ["reading", "reading", "gap"]
            opened = {**third[2].body}
            assert opened == {
                "gateway": NANCHANG.gateway,
                "epoch": "epoch-1",
                "from_seq": 2,
                "to_seq": 2,
                "from": None,
                "to": None,
                "lost": None,
                "reason": "missing",
                "state": "open",
            }
            assert [opened] == await feed.get("/v1/gaps", state="open")
            await feed.deliver((NANCHANG, 2), (NANCHANG, 4))  # fills it; a gap record; a clear
            fourth = await stream.take(6)
            assert _kinds(fourth) == ["reading", "reading", "reading", "gap", "gap", "alarm"]
            record, closed = fourth[3].body, fourth[4].body
            assert [record] == await feed.get("/v1/gaps", state="closed")
            assert closed == {**opened, "state": "closed"}
            assert fourth[5].body == (await feed.get("/v1/alarms"))[0]
            assert fourth[5].body["cleared_at"] == iso_time(clear_t)
            events = [*first, *second, *third, *fourth]
            positions = [_position(m) for m in events]
            assert positions == sorted(positions)
            assert len(set(positions)) == len(positions)
            assert not await stream.quiet()
            streamed = [m.body for m in events if m.event == "reading"]
            assert _canonical(streamed) == _canonical(await feed.get("/v1/readings"))
            # ?tz= shows times at that offset, as on the list endpoints.
            async with open_stream(feed.base_url, last_event_id="r0.f0", tz="+08:00") as local:
                (_, one) = await local.take(2)
            beijing_time = datetime.fromtimestamp(BASE_TIME + 1, timezone(timedelta(hours=8)))
            assert one.body["t"] == beijing_time.isoformat(timespec="milliseconds")


async def test_a_reconnect_resumes_exactly_after_its_last_event_id(storage_url: str) -> None:
    async with _served(storage_url) as feed:
        feed.chain(NANCHANG, {seq: _records(NANCHANG, seq) for seq in range(1, 7)})
        async with open_stream(feed.base_url) as stream:
            await stream.take(1)
            await feed.deliver((NANCHANG, 1), (NANCHANG, 2))
            before = await stream.take(4)
        await feed.deliver((NANCHANG, 3))  # while nobody listens
        again = await _resume(
            feed.base_url, before[1].id, 4, then=lambda: feed.deliver((NANCHANG, 4))
        )
        assert [m.data for m in again[:2]] == [m.data for m in before[2:]]
        values = [(m.body["point"], m.body["value"]) for m in again]
        assert values == [
            (LEVEL, 2.0),
            (PRESSURE, 20.0),
            (LEVEL, 3.0),
            (PRESSURE, 30.0),
            (LEVEL, 4.0),
            (PRESSURE, 40.0),
        ]
        # Filtered streams resume the same way: their ids skip what the filter hides.
        async with open_stream(feed.base_url, last_event_id="r0.f0", point=PRESSURE) as pressure:
            found = await pressure.take(5)
            assert [m.body["value"] for m in found[1:]] == [10.0, 20.0, 30.0, 40.0]
        async with open_stream(feed.base_url, last_event_id=found[2].id, point=PRESSURE) as rest:
            await rest.take(1)
            tail = await rest.take(2)
            await feed.deliver((NANCHANG, 5))
            tail += await rest.take(1)
        assert [m.body["value"] for m in tail] == [30.0, 40.0, 50.0]


async def test_a_token_streams_only_its_districts_and_filters_narrow_it(storage_url: str) -> None:
    async with _served(storage_url) as feed:
        feed.chain(NANCHANG, {1: _records(NANCHANG, 1), 2: _records(NANCHANG, 2)})
        feed.chain(BEIJING, {1: _records(BEIJING, 1), 3: _records(BEIJING, 3)})
        async with (
            open_stream(feed.base_url, "nc-token") as nanchang,
            open_stream(feed.base_url, "sz-token") as shenzhen,
            open_stream(feed.base_url, gateway=BEIJING.gateway) as beijing,
            open_stream(feed.base_url, types="status,gap") as changes,
            open_stream(feed.base_url, "nc-token", gateway=BEIJING.gateway) as outside,
        ):
            for stream in (nanchang, shenzhen, beijing, changes, outside):
                await stream.take(1)
            await feed.deliver(
                (BEIJING, 1),
                (NANCHANG, 1),
                (BEIJING, 3),
                statuses=[StatusUpdate(BEIJING.gateway, online=False, at=BASE_TIME)],
            )
            await feed.deliver((NANCHANG, 2))
            seen = await nanchang.take(4)
            assert {m.body["gateway"] for m in seen} == {NANCHANG.gateway}
            assert _kinds(seen) == ["reading"] * 4
            from_beijing = await beijing.take(6)
            assert _kinds(from_beijing) == ["reading"] * 4 + ["gap", "status"]
            assert {m.body["gateway"] for m in from_beijing} == {BEIJING.gateway}
            assert _kinds(await changes.take(2)) == ["gap", "status"]
            for stream in (nanchang, shenzhen, beijing, changes, outside):
                assert not await stream.quiet(0.2)


async def test_pings_keep_an_idle_stream_open(storage_url: str) -> None:
    async with _served(storage_url, heartbeat=0.2) as feed, open_stream(feed.base_url) as stream:
        messages = await stream.take(3, comments=True)
        assert messages[0].id == "r0.f0"
        assert all(m.comment is not None for m in messages[1:])


@contextlib.asynccontextmanager
async def _asgi(storage: Storage) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(storage, TOKENS, clock=lambda: BASE_TIME)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://collector") as http:
        yield http


@pytest.mark.parametrize(
    ("params", "headers", "status", "detail"),
    [
        ({"types": "reading,weather"}, {}, 400, "weather"),
        ({"types": ""}, {}, 400, "at least one"),
        ({}, {"Last-Event-ID": "yesterday"}, 400, "not a position"),
        ({}, {"Last-Event-ID": "r99.f0"}, 400, "ahead"),
        ({"tz": "+25:00"}, {}, 400, ""),
        ({}, {"Authorization": "Bearer nope"}, 401, ""),
    ],
)
async def test_bad_stream_requests_are_problems(
    storage_url: str, params: dict[str, str], headers: dict[str, str], status: int, detail: str
) -> None:
    async with open_storage(storage_url) as storage, _asgi(storage) as http:
        response = await http.get(
            "/v1/stream", params=params, headers={"Authorization": "Bearer all-token", **headers}
        )
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert detail in response.json()["detail"]


async def test_a_stream_resumes_across_a_collector_restart(
    broker: Broker, tmp_path: Path, storage_url: str
) -> None:
    path = await keyed_collector_config(
        tmp_path, broker_port=broker.port, tokens=TOKEN_ROWS, storage_url=storage_url
    )
    config = load_collector_config(path)
    async with contextlib.AsyncExitStack() as outlives:
        async with run_collector(config) as collector, gateway_link(broker.port, NANCHANG) as link:
            await register(collector.storage, NANCHANG)
            await asyncio.wait_for(collector.wait_connected(), WAIT)
            stream = await outlives.enter_async_context(open_stream(collector.api_url))
            await stream.take(1)
            for seq in (1, 2):
                await link.send(seq)
                await link.next_ack()
            before = await stream.take(2)
            assert [m.body["value"] for m in before] == [1.0, 2.0]
            stopping = time.monotonic()
        # The collector stopped with the stream open: the stream ended, it did not hold it up.
        assert time.monotonic() - stopping < 3
        await asyncio.wait_for(stream.ended.wait(), WAIT)
    async with run_collector(config) as collector, gateway_link(broker.port, NANCHANG) as link:
        await asyncio.wait_for(collector.wait_connected(), WAIT)
        async with open_stream(collector.api_url, last_event_id=before[0].id) as resumed:
            (hello,) = await resumed.take(1)
            assert hello.id == before[0].id
            (again,) = await resumed.take(1)
            assert again.data == before[1].data
            await link.send(3)  # chained onto the blocks the first link sent
            await link.next_ack()
            (new,) = await resumed.take(1)
            assert new.body["value"] == 3.0
            assert not await resumed.quiet()


async def _two_runs_of_blocks(storage: Storage) -> None:
    """Register Nanchang and store its blocks 1..4, arrived in two runs 180 s apart."""
    arrivals = {1: 0.0, 2: 10.0, 3: 20.0, 4: 200.0}
    await register(storage, NANCHANG)
    owner, key = NANCHANG.registration()
    grants = {key.kid: KeyGrant(key, owner)}
    prev = GENESIS
    messages = []
    for seq, arrival in arrivals.items():
        payload = NANCHANG.block(seq, prev=prev)
        prev = block_hash(payload)
        messages.append(
            Inbound(
                NANCHANG.topics.block, payload, tuple(NANCHANG.sign(payload)), BASE_TIME + arrival
            )
        )
    await storage.ingest(plan_batch(messages, grants, default_catalogue()))


async def test_a_schema_6_file_gets_the_journal_presence_and_poll_of_schema_7(
    tmp_path: Path,
) -> None:
    path = tmp_path / "six.db"
    async with open_storage(f"sqlite:///{path}") as storage:
        await _two_runs_of_blocks(storage)
    # What schema 6 had: no journal, no presence, no poll periods.
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("DROP TABLE feed")
        db.execute("DROP TABLE presence")
        db.execute("ALTER TABLE point_meta DROP COLUMN poll")
        db.execute("DROP TABLE readings_1m")  # schema 8's, made again by its upgrade
        db.execute("PRAGMA user_version = 6")
    async with open_storage(f"sqlite:///{path}") as storage:
        assert isinstance(storage, FeedJournal)
        assert await storage.feed_head() == FeedPosition(readings=4, journal=0)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        columns = {row[1] for row in db.execute("PRAGMA table_info(point_meta)")}
        assert "poll" in columns
        assert db.execute("SELECT count(*) FROM feed").fetchone() == (0,)
        # Presence is rebuilt from the blocks' arrivals: live 60 s past each run's last block.
        assert db.execute(
            "SELECT gateway, since - ?, until - ? FROM presence ORDER BY since",
            (BASE_TIME, BASE_TIME),
        ).fetchall() == [(NANCHANG.gateway, 0.0, 80.0), (NANCHANG.gateway, 200.0, 260.0)]


# --- PostgreSQL: two collectors on one database ---------------------------------------------


@contextlib.asynccontextmanager
async def _other_collector(url: str) -> AsyncIterator[Feed]:
    """A second storage on the database at `url`: another collector that ingests, serves nothing.

    Its commit signal is its own: a stream served by the first collector can only learn of its
    commits from the database (NOTIFY).
    """
    async with open_storage(url) as storage:
        yield Feed(storage, LocalCommitSignal(), base_url="http://not-served.invalid")


async def test_a_stream_on_one_collector_wakes_for_what_another_commits(postgres_url: str) -> None:
    async with _served(postgres_url) as a, _other_collector(postgres_url) as b:
        assert isinstance(a.storage, CommitRelay)
        b.chain(NANCHANG, {seq: _records(NANCHANG, seq) for seq in range(1, 5)})
        async with open_stream(a.base_url) as stream:
            await stream.take(1)
            started = time.monotonic()
            await b.deliver((NANCHANG, 1))
            first = await stream.take(2)
            # A's re-read is 60 s away and nothing rang A's signal: B's NOTIFY woke the stream.
            assert time.monotonic() - started < WAIT
            await b.deliver((NANCHANG, 2))
            second = await stream.take(2)
        await b.deliver((NANCHANG, 3))  # while nobody listens
        again = await _resume(a.base_url, second[0].id, 3, then=lambda: b.deliver((NANCHANG, 4)))
    assert [m.body["value"] for m in [*first, *second]] == [1.0, 10.0, 2.0, 20.0]
    assert again[0].data == second[1].data
    assert [m.body["value"] for m in again] == [20.0, 3.0, 30.0, 4.0, 40.0]
    assert all(m.body["gateway"] == NANCHANG.gateway for m in again)


async def test_two_collectors_sweeping_at_once_announce_an_alarm_come_due_once(
    postgres_url: str,
) -> None:
    """An alarm raised by an event stamped 20 min ahead, come due: two collectors on one
    database sweep for it at once (each its first sweep, so the whole journal) and the feed
    gets one alarm event for it, whichever sweeps first (the feed lock, then a look again)."""
    async with _served(postgres_url) as a, _other_collector(postgres_url) as b:
        raised = BASE_TIME + 1 + 20 * 60  # arrives at BASE_TIME + 1
        a.chain(NANCHANG, {1: [alarm_record("fast/1", AlarmEvent.RAISE, raised)]})
        await a.deliver((NANCHANG, 1))
        sweep = ActivationWindow().sweep(raised - AHEAD_ALLOWANCE + 5, AHEAD_ALLOWANCE)
        stores = [a.storage, b.storage]
        sweepers = [store for store in stores if isinstance(store, AlarmActivations)]
        assert len(sweepers) == 2
        done = await asyncio.gather(*(store.announce_activations(sweep) for store in sweepers))
        again = await asyncio.gather(*(store.announce_activations(sweep) for store in sweepers))
    assert sorted(len(found.alarms) for found in done) == [0, 1]
    assert [len(found.alarms) for found in again] == [0, 0]
    assert await sql_rows(postgres_url, "SELECT count(*) FROM feed WHERE kind = 'alarm'") == [(2,)]


async def test_collectors_of_different_allowances_on_one_database_send_the_same_events(
    postgres_url: str,
) -> None:
    """The defect (e1e817a): a stream judged an alarm event's `active` with the allowance of
    the collector serving it, and a sweep took a row for an announcement by that allowance
    too. A at 900 s announced a raise 20 min ahead once its clock came within 900 s; B at
    300 s, on the same database, sent A's event `active: false` (the same id, another body
    than A's stream) and announced the alarm again at its own 300 s. Now the event says
    `active` as its writer judged it (kept in the journal row), whoever serves it, and a
    sweep takes the newest row's word for whether the alarm is announced."""
    async with (
        _served(postgres_url, allowance=900.0) as a,
        _served(postgres_url, allowance=300.0, registered=True) as b,
    ):
        raised = BASE_TIME + 1 + 20 * 60  # arrives at BASE_TIME + 1: ahead by both allowances
        a.chain(NANCHANG, {1: [alarm_record("fast/1", AlarmEvent.RAISE, raised)]})
        await a.deliver((NANCHANG, 1))
        assert isinstance(a.storage, AlarmActivations)
        assert isinstance(b.storage, AlarmActivations)
        by_a = await a.storage.announce_activations(
            ActivationWindow().sweep(raised - 900.0 + 5, 900.0)
        )
        by_b = await b.storage.announce_activations(
            ActivationWindow().sweep(raised - 300.0 + 5, 300.0)
        )
        seen = []
        for feed in (a, b):
            async with open_stream(feed.base_url, last_event_id="r0.f0", types="alarm") as stream:
                events = [*(await stream.take(3))[1:], *await stream.quiet(0.3)]
                seen.append([(m.id, m.body.get("active")) for m in events])
    assert ((len(by_a.alarms), len(by_b.alarms)), seen[1]) == ((1, 0), seen[0])
    assert [active for _, active in seen[0]] == [False, True]


async def test_a_lost_listening_connection_is_opened_again(postgres_url: str) -> None:
    async with _served(postgres_url) as a, _other_collector(postgres_url) as b:
        b.chain(NANCHANG, {seq: _records(NANCHANG, seq) for seq in (1, 2)})
        async with open_stream(a.base_url) as stream:
            await stream.take(1)
            ended = await sql_rows(
                postgres_url,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'ganzhi-collector-listen'"
                " AND datname = current_database()",
            )
            assert ended == [(True,)]  # A's listener, the only one on this database
            # Told to nobody, or to the dying connection: the relay rings once when back.
            await b.deliver((NANCHANG, 1))
            first = await stream.take(2)
            await b.deliver((NANCHANG, 2))  # told to the new connection
            second = await stream.take(2)
            listening = await sql_rows(
                postgres_url,
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'ganzhi-collector-listen'"
                " AND datname = current_database()",
            )
            assert listening == [(1,)]
    assert [m.body["value"] for m in [*first, *second]] == [1.0, 10.0, 2.0, 20.0]


async def test_commits_of_two_collectors_at_once_reach_a_stream_each_once_in_order(
    postgres_url: str,
) -> None:
    rounds = 12
    async with _served(postgres_url) as a, _other_collector(postgres_url) as b:
        a.chain(BEIJING, {seq: _records(BEIJING, seq) for seq in range(1, rounds + 1)})
        b.chain(NANCHANG, {seq: _records(NANCHANG, seq) for seq in range(1, rounds + 1)})
        async with open_stream(a.base_url) as stream:
            await stream.take(1)

            async def run(collector: Feed, gateway: SimGateway) -> None:
                for seq in range(1, rounds + 1):
                    await collector.deliver((gateway, seq))

            # Both ingest side by side, on connections of their own: transactions overlap.
            await asyncio.gather(run(a, BEIJING), run(b, NANCHANG))
            got = await stream.take(2 * 2 * rounds)
            assert not await stream.quiet()
        stored = await a.get("/v1/readings", limit="1000")
    positions = [_position(m) for m in got]
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    assert _canonical([m.body for m in got]) == _canonical(stored)
    for gateway in (NANCHANG, BEIJING):
        mine = [m.body["value"] for m in got if m.body["gateway"] == gateway.gateway]
        assert mine == [v for seq in range(1, rounds + 1) for v in (seq * 1.0, seq * 10.0)]


async def test_a_feed_writer_waits_for_the_feed_lock_so_ids_follow_commits(
    postgres_url: str,
) -> None:
    async with _served(postgres_url) as a:
        a.chain(NANCHANG, {1: _records(NANCHANG, 1)})
        feed = a.storage
        assert isinstance(feed, FeedJournal)
        # Another writer (a bare session) holds the feed lock inside its transaction.
        holder = await asyncpg.connect(postgres_url)
        try:
            held = holder.transaction()
            await held.start()
            await holder.execute("SELECT pg_advisory_xact_lock($1)", FEED_LOCK)
            ingest = asyncio.create_task(a.deliver((NANCHANG, 1)))
            done, _ = await asyncio.wait({ingest}, timeout=1.0)
            assert not done  # its readings got no ids yet: it queues behind the holder
            assert await feed.feed_head() == FeedPosition(0, 0)
            await held.rollback()
            await asyncio.wait_for(ingest, WAIT)
        finally:
            await holder.close()
        assert await feed.feed_head() == FeedPosition(2, 0)


_AUDIT_10 = ("kind", "source", "minute", "count", "last_at", "chain_seq", "prev", "hash")
_UNDO: dict[int, tuple[str, ...]] = {
    4: (
        "DROP TABLE audit_chain",
        "DROP TABLE api_tokens",
        "ALTER TABLE audit " + ", ".join(f"DROP COLUMN {column}" for column in _AUDIT_10),
    ),
    5: (
        "ALTER TABLE gateway_keys "
        + ", ".join(
            f"DROP COLUMN {column}"
            for column in ("retired_at", "announced_by", "announced_epoch", "announced_seq")
        ),
    ),
    6: ("DROP INDEX gaps_by_hole",),
    7: (
        "ALTER TABLE blocks DROP COLUMN newest_t",
        "ALTER TABLE ingest_state DROP COLUMN pruned_through",
    ),
    8: ("DROP TABLE retention_state",),
    9: (),  # deletes gap records stored twice: adds nothing to undo
    10: ("ALTER TABLE alarms DROP COLUMN raise_ahead, DROP COLUMN clear_ahead",),
    11: ("DROP INDEX gaps_by_record_time",),
    12: (),  # the journal's `active` column: the journal is dropped whole above
    13: (
        "ALTER TABLE readings_1m DROP CONSTRAINT readings_1m_pkey",
        "ALTER TABLE readings_1m ADD PRIMARY KEY (gateway, point, minute)",
    ),
}
"""What each migration after 3 adds, undone: the database must look as version 2 left it."""


async def test_postgresql_migration_3_gives_the_journal_presence_and_poll(
    postgres_url: str,
) -> None:
    assert sorted(_UNDO) == list(range(4, POSTGRES_SCHEMA + 1)), "undo each later migration"
    async with open_storage(postgres_url) as storage:
        await _two_runs_of_blocks(storage)
    # What version 2 had: no journal, no presence, no poll periods, no index on readings.id.
    for statement in (
        "DROP TABLE feed",
        "DROP TABLE presence",
        "ALTER TABLE point_meta DROP COLUMN poll",
        "DROP INDEX readings_by_id",
        *(undo for version in sorted(_UNDO, reverse=True) for undo in _UNDO[version]),
        "DELETE FROM schema_migrations WHERE version >= 3",
    ):
        await sql_execute(postgres_url, statement)
    async with open_storage(postgres_url) as storage:
        assert isinstance(storage, FeedJournal)
        assert await storage.feed_head() == FeedPosition(readings=4, journal=0)
    versions = await sql_rows(postgres_url, "SELECT version FROM schema_migrations ORDER BY 1")
    assert versions[:3] == [(1,), (2,), (3,)]
    assert await sql_rows(
        postgres_url,
        "SELECT count(*) FROM information_schema.columns"
        " WHERE table_name = 'point_meta' AND column_name = 'poll'",
    ) == [(1,)]
    assert await sql_rows(postgres_url, "SELECT count(*) FROM feed") == [(0,)]
    # Rebuilt from the blocks' arrivals as SQLite's schema 7 does (the test above).
    assert await sql_rows(
        postgres_url,
        "SELECT gateway, since - ?, until - ? FROM presence ORDER BY since",
        BASE_TIME,
        BASE_TIME,
    ) == [(NANCHANG.gateway, 0.0, 80.0), (NANCHANG.gateway, 200.0, 260.0)]


async def test_a_stream_resumes_after_retention_pruned_the_journal_it_read(
    storage_url: str,
) -> None:
    """Retention deletes old journal rows, so the journal's newest id can fall below the id a
    client holds. That id was still made by this database: the client (a browser's
    EventSource reconnecting on its own) resumes from it and gets what comes next."""
    async with _served(storage_url) as feed:
        async with open_stream(feed.base_url, types="status") as stream:
            await stream.take(1)
            await feed.deliver(statuses=[StatusUpdate(NANCHANG.gateway, online=True, at=BASE_TIME)])
            (online,) = await stream.take(1)
        month_end = month_start(next_month(month_of(BASE_TIME)))
        pruned = await prune_storage(
            storage_url, RetentionPolicy(raw_days=45), month_end + 46 * DAY
        )
        assert pruned.feed_events_dropped == 1
        async with open_stream(feed.base_url, last_event_id=online.id, types="status") as resumed:
            (hello,) = await resumed.take(1)
            assert hello.id == online.id
            await feed.deliver(
                statuses=[StatusUpdate(NANCHANG.gateway, online=False, at=BASE_TIME + 1)]
            )
            (offline,) = await resumed.take(1)
        assert offline.body["online"] is False
        assert _position(offline) > _position(online)
