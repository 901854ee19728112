"""Alarms raised ahead of the collector's clock on the live feed, on SQLite and PostgreSQL.

An alarm raised by an event stamped more than `ingest.ahead_allowance` past the collector's
clock at arrival is flagged `ahead_of_collector` and not active until that clock is within the
allowance of its raise (GET /v1/alarms judges it when asked). A consumer of `/v1/stream` (the
downstream platform) must be able to tell the same from the feed alone: each alarm event says
whether the alarm is `active` as the collector wrote the event, and a flagged raise still open
when the clock catches up gets an event of its own then, once, also across a restart. A whole
collector (`run_collector`, what `collector serve` runs) on a real Mosquitto, its clock
injected, read by a real SSE client.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import httpx
import pytest
from structlog.testing import capture_logs
from structlog.typing import EventDict

from collector.config import CollectorConfig, load_collector_config
from collector.model import AHEAD_ALLOWANCE as ALLOWANCE  # the config's default
from collector.runtime import RunningCollector, run_collector
from specs.records import AlarmEvent, iso_time
from tests.support.broker import Broker
from tests.support.clocks import ManualClock
from tests.support.collector_api import PROBLEM_KEYS, get_page
from tests.support.collector_client import BASE_TIME, gateway_link, sim_gateway
from tests.support.collector_env import keyed_collector_config, register
from tests.support.feed_client import WAIT, Message, open_stream
from tests.support.records import alarm_record

NANCHANG = sim_gateway(1, district="360100")
TOKENS = (("province", "all-token", ("*",)),)
NOW: Final = BASE_TIME + 100.0
AHEAD: Final = "ahead_of_collector"
RAISED: Final = NOW + 20 * 60  # a gateway 20 min fast: 5 min past the allowance


@pytest.fixture
async def config(broker: Broker, tmp_path: Path, storage_url: str) -> CollectorConfig:
    path = await keyed_collector_config(
        tmp_path, broker_port=broker.port, tokens=TOKENS, storage_url=storage_url
    )
    return load_collector_config(path)


async def _started(running: RunningCollector) -> RunningCollector:
    await asyncio.wait_for(running.wait_connected(), WAIT)
    await register(running.storage, NANCHANG)
    return running


@pytest.fixture
async def collector(config: CollectorConfig) -> AsyncIterator[tuple[RunningCollector, ManualClock]]:
    clock = ManualClock(NOW)
    async with run_collector(config, clock=clock) as running:
        yield await _started(running), clock


def _alarm(message: Message) -> tuple[str, str | None, bool | None, list[str]]:
    assert message.event == "alarm"
    body = message.body
    return body["alarm_id"], body["cleared_at"], body.get("active"), body["flags"]


async def _listed(running: RunningCollector) -> dict[str, tuple[bool | None, list[str]]]:
    async with httpx.AsyncClient(base_url=running.api_url) as http:
        items = (await get_page(http, "/v1/alarms"))["items"]
    return {item["alarm_id"]: (item.get("active"), item["flags"]) for item in items}


async def test_alarm_events_say_whether_active_and_a_raise_ahead_becomes_active_on_the_feed(
    broker: Broker, collector: tuple[RunningCollector, ManualClock]
) -> None:
    """The defect (f3788a8 left it): alarm events on /v1/stream carried no `active`, so a
    consumer could not tell that a raise flagged ahead_of_collector was not active yet, nor
    learn from the feed when it became so: the alarm state on the feed was the same before and
    after the collector's clock caught up (the status page re-read /v1/alarms every minute for
    it). Now each alarm event says `active` as the collector judged it when writing the event,
    and an open flagged raise gets one more event, `active: true`, once the clock is within the
    allowance of it; GET /v1/alarms says `active` too, judged when asked."""
    running, clock = collector
    async with (
        open_stream(running.api_url, types="alarm") as stream,
        gateway_link(broker.port, NANCHANG) as link,
    ):
        await stream.take(1)  # the hello
        await link.send(
            1,
            records=[
                alarm_record("now/1", AlarmEvent.RAISE, NOW - 10),
                alarm_record("fast/1", AlarmEvent.RAISE, RAISED),
            ],
        )
        assert (await link.next_ack()).ack.acked_through == 1
        raised = await stream.take(2)
        assert [_alarm(m) for m in raised] == [
            ("now/1", None, True, []),
            ("fast/1", None, False, [AHEAD]),
        ]
        assert await _listed(running) == {"now/1": (True, []), "fast/1": (False, [AHEAD])}
        clock.now = RAISED - ALLOWANCE  # the clock reaches the allowance of the raise
        (became,) = await stream.take(1)
        assert _alarm(became) == ("fast/1", None, True, [AHEAD])
        assert became.body["raised_at"] == raised[1].body["raised_at"]
        assert await _listed(running) == {"now/1": (True, []), "fast/1": (True, [AHEAD])}
        clock.now = RAISED + 60
        assert not await stream.quiet(1.5)  # once: the next sweeps announce nothing more
        await link.send(2, records=[alarm_record("fast/1", AlarmEvent.CLEAR, RAISED + 30)])
        assert (await link.next_ack()).ack.acked_through == 2
        (cleared,) = await stream.take(1)
    assert _alarm(cleared) == ("fast/1", iso_time(RAISED + 30), False, [AHEAD])


async def test_a_raise_that_came_due_while_the_collector_was_stopped_is_announced_once(
    broker: Broker, config: CollectorConfig
) -> None:
    """Nothing in one process's memory decides: a flagged raise whose time the clock reached
    while no collector ran gets its event at the next start, and a start after that (its event
    in the journal) announces nothing again. A client resuming with Last-Event-ID gets it."""
    clock = ManualClock(NOW)
    async with run_collector(config, clock=clock) as running:
        await _started(running)
        async with open_stream(running.api_url, types="alarm") as stream:
            await stream.take(1)
            async with gateway_link(broker.port, NANCHANG) as link:
                await link.send(1, records=[alarm_record("fast/1", AlarmEvent.RAISE, RAISED)])
                assert (await link.next_ack()).ack.acked_through == 1
            (raised,) = await stream.take(1)
    assert _alarm(raised) == ("fast/1", None, False, [AHEAD])
    clock.now = RAISED - ALLOWANCE + 120  # stopped while the clock passed it
    async with run_collector(config, clock=clock) as running:
        await _started(running)
        async with open_stream(running.api_url, last_event_id=raised.id) as resumed:
            hello, became = await resumed.take(2)
            assert hello.id == raised.id
            assert _alarm(became) == ("fast/1", None, True, [AHEAD])
    async with run_collector(config, clock=clock) as running:
        await _started(running)
        async with open_stream(running.api_url, last_event_id=became.id) as again:
            await again.take(1)
            assert not await again.quiet(1.5)


async def test_a_sweep_whose_read_fails_is_tried_again_and_the_collector_stays_up(
    broker: Broker, tmp_path: Path
) -> None:
    """The defect (e1e817a): the sweep task tried again on StorageError only, and SQLite's reads
    handed back sqlite3's own errors: one failed read ended the task, and `collector serve`
    with it (RunningCollector.wait takes the first task to end for a failure). Now SQLite's
    reads say StorageError as PostgreSQL's do: the sweep logs it and runs again a second
    later, and an API read answers 503. The read fails for real: another connection takes the
    alarms table away (a lock cannot keep a WAL reader out), and puts it back."""
    path = tmp_path / "collector.db"
    config = load_collector_config(
        await keyed_collector_config(
            tmp_path, broker_port=broker.port, tokens=TOKENS, storage_url=f"sqlite:///{path}"
        )
    )
    failed = asyncio.Event()

    def seen(_logger: object, _name: str, event: EventDict) -> EventDict:
        if event["event"] == "alarm_activation_sweep_failed":
            failed.set()
        return event

    clock = ManualClock(NOW)
    other = sqlite3.connect(path, isolation_level=None)
    async with run_collector(config, clock=clock) as running:
        await _started(running)
        async with (
            open_stream(running.api_url, types="alarm") as stream,
            gateway_link(broker.port, NANCHANG) as link,
            httpx.AsyncClient(base_url=running.api_url) as http,
        ):
            await stream.take(1)
            await link.send(1, records=[alarm_record("fast/1", AlarmEvent.RAISE, RAISED)])
            assert (await link.next_ack()).ack.acked_through == 1
            (raised,) = await stream.take(1)
            with capture_logs(processors=[seen]) as logs:
                other.execute("ALTER TABLE alarms RENAME TO alarms_away")
                await asyncio.wait_for(failed.wait(), WAIT)
                answer = await http.get("/v1/alarms", headers={"Authorization": "Bearer all-token"})
                other.execute("ALTER TABLE alarms_away RENAME TO alarms")
                clock.now = RAISED - ALLOWANCE
                (became,) = await stream.take(1)
            assert not [task.get_name() for task in running.tasks if task.done()]
    other.close()
    assert _alarm(raised) == ("fast/1", None, False, [AHEAD])
    assert _alarm(became) == ("fast/1", None, True, [AHEAD])
    (failure, *_) = [e for e in logs if e["event"] == "alarm_activation_sweep_failed"]
    assert "no such table: alarms" in failure["error"]
    assert answer.status_code == 503
    assert set(answer.json()) == PROBLEM_KEYS
