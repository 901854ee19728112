"""Readings stamped ahead of the collector's clock, on SQLite and PostgreSQL.

A gateway whose own clock is wrong (its RTC reset to 2099, a bad NTP source a month ahead)
seals readings with that time. They are signed data and stay stored as sent, but past
`ingest.ahead_allowance` (15 min) beyond the collector's clock at arrival they are no current
value: they stay out of `latest` (GET /v1/latest) and the per-minute rollups, carry the flag
`ahead_of_collector` in GET /v1/readings, and each block with some is audited
`ahead_of_collector`, counted and logged. A whole collector (`run_collector`, what `collector
serve` runs) on a real Mosquitto, its clock injected.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from structlog.testing import capture_logs

from collector.config import load_collector_config
from collector.runtime import RunningCollector, run_collector
from collector.storage import open_storage
from collector.storage.months import month_of, month_start, next_month
from collector.storage.retention import DAY
from specs.records import AlarmEvent, iso_time
from tests.support.broker import Broker
from tests.support.clocks import ManualClock
from tests.support.collector_api import auth, get_page
from tests.support.collector_client import BASE_TIME, gateway_link, sim_gateway
from tests.support.collector_env import keyed_collector_config, register
from tests.support.metric_samples import samples_of, value_of
from tests.support.postgres import sql_execute, sql_rows
from tests.support.records import alarm_record, reading_at

NANCHANG = sim_gateway(1, district="360100")
TOKENS = (("province", "all-token", ("*",)),)
NOW: Final = BASE_TIME + 100.0
ALLOWANCE: Final = 900.0  # ingest.ahead_allowance's default
AHEAD: Final = "ahead_of_collector"
WAIT: Final = 10.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
async def collector(
    broker: Broker, tmp_path: Path, storage_url: str, clock: ManualClock
) -> AsyncIterator[RunningCollector]:
    path = await keyed_collector_config(
        tmp_path, broker_port=broker.port, tokens=TOKENS, storage_url=storage_url
    )
    async with run_collector(load_collector_config(path), clock=clock) as running:
        await asyncio.wait_for(running.wait_connected(), WAIT)
        await register(running.storage, NANCHANG)
        yield running


async def _get(collector: RunningCollector, path: str, **params: Any) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=collector.api_url) as http:
        items: list[dict[str, Any]] = (await get_page(http, path, **params))["items"]
    return items


async def _latest(collector: RunningCollector) -> dict[str, tuple[str, float, list[str]]]:
    items = await _get(collector, "/v1/latest", gateway=NANCHANG.gateway)
    return {item["point"]: (item["t"], item["value"], item["flags"]) for item in items}


async def _readings(collector: RunningCollector, point: str) -> list[tuple[str, float, list[str]]]:
    items = await _get(collector, "/v1/readings", gateway=NANCHANG.gateway, point=point)
    return [(item["t"], item["value"], item["flags"]) for item in items]


async def _audited(url: str, reason: str) -> list[tuple[int, str]]:
    rows = await sql_rows(url, f"SELECT count, detail FROM audit WHERE reason = '{reason}'")
    return [(int(row[0]), str(row[1])) for row in rows]


async def _scraped(collector: RunningCollector, name: str) -> float:
    async with httpx.AsyncClient(base_url=collector.api_url) as http:
        response = await http.get("/metrics", headers=auth())
    assert response.status_code == 200, response.text
    return value_of(samples_of(response.text), name)


def _t(t: float) -> str:
    return iso_time(t)


async def test_a_reading_a_month_ahead_is_kept_but_the_current_one_is_latest(
    broker: Broker, collector: RunningCollector, storage_url: str
) -> None:
    """The defect (found on main): a gateway whose clock ran 30 days ahead sent a reading; it
    was stored unmarked, `latest` kept it for good (a newer-or-equal t only), so GET
    /v1/latest hid every current value sent after it; its minute was rolled up; nothing was
    audited, counted or logged. Now it is stored as sent with the flag, `latest` and the
    rollups hold the current reading, one audit row, the counter and a log line say so."""
    future = NOW + 30 * DAY
    with capture_logs() as logs:
        async with gateway_link(broker.port, NANCHANG) as link:
            await link.send(1, records=[reading_at(future, 9.0)])
            assert (await link.next_ack()).ack.acked_through == 1
            await link.send(2, records=[reading_at(NOW - 1, 2.0)])
            assert (await link.next_ack()).ack.acked_through == 2
    assert await _latest(collector) == {"T001-LT-01": (_t(NOW - 1), 2.0, [])}
    assert await _readings(collector, "T001-LT-01") == [
        (_t(NOW - 1), 2.0, []),
        (_t(future), 9.0, [AHEAD]),
    ]
    (audit,) = await _audited(storage_url, AHEAD)
    assert audit[0] == 1
    assert "1 reading(s)" in audit[1]
    assert f"T001-LT-01@{_t(future)}" in audit[1]
    assert await _scraped(collector, "gz_collector_readings_ahead_of_collector_total") == 1
    assert await _scraped(collector, "gz_collector_readings_stored_total") == 2
    minutes = await sql_rows(storage_url, "SELECT minute, n FROM readings_1m ORDER BY minute")
    assert [(float(row[0]), int(row[1])) for row in minutes] == [(NOW - 1 - (NOW - 1) % 60, 1)]
    (line,) = [entry for entry in logs if entry["event"] == "readings_ahead_of_collector"]
    assert line["gateway"] == NANCHANG.gateway
    assert (line["seq"], line["readings"]) == (1, 1)
    assert line["ahead_seconds"] == 30 * DAY


async def test_the_allowance_is_the_bound(
    broker: Broker, collector: RunningCollector, storage_url: str
) -> None:
    """A reading at the allowance is current; a millisecond past it is ahead."""
    at_bound = reading_at(NOW + ALLOWANCE, 1.0, point="T001-LT-02")
    past_bound = reading_at(NOW + ALLOWANCE + 0.001, 2.0, point="T001-LT-03")
    async with gateway_link(broker.port, NANCHANG) as link:
        await link.send(1, records=[at_bound, past_bound])
        assert (await link.next_ack()).ack.acked_through == 1
    assert await _latest(collector) == {"T001-LT-02": (_t(NOW + ALLOWANCE), 1.0, [])}
    assert await _readings(collector, "T001-LT-03") == [(_t(NOW + ALLOWANCE + 0.001), 2.0, [AHEAD])]
    assert [count for count, _ in await _audited(storage_url, AHEAD)] == [1]
    assert await _scraped(collector, "gz_collector_readings_ahead_of_collector_total") == 1


async def test_a_reading_stored_ahead_is_a_duplicate_when_it_comes_again_in_its_time(
    broker: Broker, collector: RunningCollector, storage_url: str, clock: ManualClock
) -> None:
    """A reading stored ahead is no series' newest current t, yet the collector keeps one
    reading per (gateway, point, t): sealed again under a new epoch once its time has come, it
    is audited a duplicate and not stored twice (PostgreSQL's COPY would fail the batch, and
    the ACK would never come)."""
    ahead = reading_at(NOW + DAY, 5.0)
    async with gateway_link(broker.port, NANCHANG) as link:
        await link.send(1, records=[ahead])
        assert (await link.next_ack()).ack.acked_through == 1
        clock.now = NOW + 2 * DAY
        await link.send(1, epoch="epoch-2", records=[ahead, reading_at(NOW + 2 * DAY - 1, 6.0)])
        assert (await link.next_ack()).ack.acked_through == 1
    assert await _readings(collector, "T001-LT-01") == [
        (_t(NOW + DAY), 5.0, [AHEAD]),
        (_t(NOW + 2 * DAY - 1), 6.0, []),
    ]
    assert [count for count, _ in await _audited(storage_url, "duplicate")] == [1]
    assert await _latest(collector) == {"T001-LT-01": (_t(NOW + 2 * DAY - 1), 6.0, [])}


async def test_a_gateway_ahead_for_good_is_logged_once_a_minute(
    broker: Broker, collector: RunningCollector, storage_url: str
) -> None:
    """Every block of a gateway whose clock stays ahead is audited (aggregated per minute) and
    counted, but logged once a minute: its warning lines cannot flood the journal."""
    with capture_logs() as logs:
        async with gateway_link(broker.port, NANCHANG) as link:
            for seq in range(1, 6):
                await link.send(seq, records=[reading_at(NOW + DAY + seq, float(seq))])
                assert (await link.next_ack()).ack.acked_through == seq
    assert [count for count, _ in await _audited(storage_url, AHEAD)] == [5]
    assert await _scraped(collector, "gz_collector_readings_ahead_of_collector_total") == 5
    lines = [entry for entry in logs if entry["event"] == "readings_ahead_of_collector"]
    assert len(lines) in (1, 2)  # 2 when a minute of the monotonic clock ended meanwhile
    assert await _latest(collector) == {}


async def test_a_latest_row_left_ahead_by_an_earlier_version_gives_way(
    broker: Broker, collector: RunningCollector, storage_url: str
) -> None:
    """A database where an earlier version made a reading of 2099 a point's latest: the
    point's next current reading replaces it (a newer t alone never would)."""
    async with gateway_link(broker.port, NANCHANG) as link:
        await link.send(1, records=[reading_at(NOW - 10, 1.0)])
        assert (await link.next_ack()).ack.acked_through == 1
        year_2099 = 4_070_908_800.0
        await sql_execute(storage_url, "UPDATE latest SET t = ?, value = 8.0", year_2099)
        assert await _latest(collector) == {"T001-LT-01": (_t(year_2099), 8.0, [])}
        await link.send(2, records=[reading_at(NOW - 1, 2.0)])
        assert (await link.next_ack()).ack.acked_through == 2
    assert await _latest(collector) == {"T001-LT-01": (_t(NOW - 1), 2.0, [])}


async def test_a_gateway_cannot_flag_a_current_reading_ahead(
    broker: Broker, collector: RunningCollector, storage_url: str
) -> None:
    """Only the collector's clock decides: a gateway that sends `ahead_of_collector` itself on
    a current reading (any gateway may send any flag) does not get it stored, so GET
    /v1/latest never shows a reading flagged so and a client that leaves flagged readings out
    loses no current value; on a reading truly ahead the flag is there once."""
    async with gateway_link(broker.port, NANCHANG) as link:
        await link.send(
            1,
            records=[
                reading_at(NOW - 1, 2.0, flags=(AHEAD, "backfill")),
                reading_at(NOW + DAY, 3.0, point="T001-LT-02", flags=(AHEAD,)),
            ],
        )
        assert (await link.next_ack()).ack.acked_through == 1
    assert await _latest(collector) == {"T001-LT-01": (_t(NOW - 1), 2.0, ["backfill"])}
    assert await _readings(collector, "T001-LT-01") == [(_t(NOW - 1), 2.0, ["backfill"])]
    assert await _readings(collector, "T001-LT-02") == [(_t(NOW + DAY), 3.0, [AHEAD])]
    assert [count for count, _ in await _audited(storage_url, AHEAD)] == [1]
    assert await _scraped(collector, "gz_collector_readings_ahead_of_collector_total") == 1


async def test_buckets_from_readings_and_from_rollups_agree(
    broker: Broker, collector: RunningCollector, clock: ManualClock
) -> None:
    """Buckets read from the raw readings (under a minute, or ends off the minute) leave a
    reading stored ahead out as the per-minute rollups do: every=30s, every=1m and every=1m
    from half a minute earlier count the same minute alike."""
    minute = NOW + DAY - (NOW + DAY) % 60
    async with gateway_link(broker.port, NANCHANG) as link:
        await link.send(1, records=[reading_at(minute + 10, 9.0)])
        assert (await link.next_ack()).ack.acked_through == 1
        clock.now = minute + 30
        await link.send(2, records=[reading_at(minute + 20, 1.0)])
        assert (await link.next_ack()).ack.acked_through == 2

    async def counted(every: str, start: float) -> list[tuple[str, int, float]]:
        items = await _get(
            collector,
            "/v1/readings",
            gateway=NANCHANG.gateway,
            point="T001-LT-01",
            every=every,
            **{"from": _t(start), "to": _t(minute + 60)},
        )
        return [(item["t"], item["count"], item["max"]) for item in items]

    assert await _readings(collector, "T001-LT-01") == [
        (_t(minute + 10), 9.0, [AHEAD]),
        (_t(minute + 20), 1.0, []),
    ]
    assert await counted("1m", minute) == [(_t(minute), 1, 1.0)]
    assert await counted("30s", minute) == [(_t(minute), 1, 1.0)]
    assert await counted("1m", minute - 30) == [(_t(minute), 1, 1.0)]


async def _alarms(collector: RunningCollector, **params: Any) -> dict[str, tuple[Any, ...]]:
    items = await _get(collector, "/v1/alarms", gateway=NANCHANG.gateway, **params)
    return {
        item["alarm_id"]: (item["raised_at"], item["cleared_at"], item.get("flags"))
        for item in items
    }


async def test_an_alarm_stamped_ahead_is_kept_but_not_active(
    broker: Broker, collector: RunningCollector, storage_url: str
) -> None:
    """The defect: an alarm event stamped past ingest.ahead_allowance was merged into its
    alarm's state unmarked, so a raise of a gateway whose clock ran 30 days ahead was listed
    by GET /v1/alarms?active=true (the status page's active alarms, newest raise first: on
    top) as if raised then, until a clear came. Now an alarm with a raise or a clear stamped
    ahead is stored and listed with the flag, is not active, and its block is audited."""
    future = NOW + 30 * DAY
    async with gateway_link(broker.port, NANCHANG) as link:
        await link.send(
            1,
            records=[
                alarm_record("now/1", AlarmEvent.RAISE, NOW - 10),
                alarm_record("ahead/1", AlarmEvent.RAISE, future),
                alarm_record("cleared/1", AlarmEvent.RAISE, NOW - 5),
                alarm_record("cleared/1", AlarmEvent.CLEAR, NOW + DAY),
            ],
        )
        assert (await link.next_ack()).ack.acked_through == 1
        assert await _alarms(collector, active="true") == {"now/1": (_t(NOW - 10), None, [])}
        assert await _alarms(collector) == {
            "now/1": (_t(NOW - 10), None, []),
            "cleared/1": (_t(NOW - 5), _t(NOW + DAY), [AHEAD]),
            "ahead/1": (_t(future), None, [AHEAD]),
        }
        (audit,) = await _audited(storage_url, AHEAD)
        assert audit[0] == 1
        assert "2 alarm event(s) (ahead/1 raise@" in audit[1]
        # Its clear, sent once the gateway's clock is right again, closes it; the raise stays
        # flagged. A current raise of its own is no longer flagged.
        await link.send(2, records=[alarm_record("ahead/1", AlarmEvent.CLEAR, NOW + 50)])
        assert (await link.next_ack()).ack.acked_through == 2
    assert await _alarms(collector, active="true") == {"now/1": (_t(NOW - 10), None, [])}
    assert (await _alarms(collector))["ahead/1"] == (_t(future), _t(NOW + 50), [AHEAD])
    assert await _alarms(collector, active="false") == {
        "cleared/1": (_t(NOW - 5), _t(NOW + DAY), [AHEAD]),
        "ahead/1": (_t(future), _t(NOW + 50), [AHEAD]),
    }


async def _partitions(url: str) -> set[str]:
    """The partitions of `readings` (PostgreSQL; SQLite has none)."""
    if url.startswith("sqlite"):
        return set()
    rows = await sql_rows(
        url,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'readings'::regclass",
    )
    return {str(row[0]) for row in rows}


async def test_readings_far_ahead_make_no_partitions_of_their_own(
    broker: Broker, collector: RunningCollector, storage_url: str, clock: ManualClock
) -> None:
    """The defect (PostgreSQL): every month a reading was stamped in got a partition of
    `readings` and one of the rollups before the batch, so a gateway whose clock jumps around
    (25 readings in 2099 and in 24 months to come) made 50 tables, each under an ACCESS
    EXCLUSIVE lock on `readings`, and retention drops none before its month is past. Now a
    month past the collector's clock (arrival + allowance, and the month after) gets no
    partition: such readings are stored in one partition for all later times, and move to
    their month's partition once it is made. No reading is lost or changed on either backend."""
    far = 4070908800.0 + 3600.0  # 2099-01-01T01:00Z
    # After the months the collector made at its start by the real clock (this and the next).
    first = month_start(next_month(next_month(month_of(time.time())))) + DAY
    ahead = [first + k * 31 * DAY for k in range(24)] + [far]
    async with gateway_link(broker.port, NANCHANG) as link:
        await link.send(1, records=[reading_at(NOW - 1, 1.0)])
        assert (await link.next_ack()).ack.acked_through == 1
        before = await _partitions(storage_url)
        await link.send(2, records=[reading_at(t, float(i)) for i, t in enumerate(ahead)])
        assert (await link.next_ack()).ack.acked_through == 2
        assert await _partitions(storage_url) - before <= {"readings_future"}
        stored = [(_t(t), float(i), [AHEAD]) for i, t in enumerate(ahead)]
        assert await _readings(collector, "T001-LT-01") == [(_t(NOW - 1), 1.0, []), *stored]
        # Once the first one's time came, it is no longer ahead: its month gets a partition.
        clock.now = ahead[0] + 60
        await link.send(3, records=[reading_at(clock.now - 1, 2.0)])
        assert (await link.next_ack()).ack.acked_through == 3
    after = [(_t(NOW - 1), 1.0, []), stored[0], (_t(clock.now - 1), 2.0, []), *stored[1:]]
    assert await _readings(collector, "T001-LT-01") == after
    if storage_url.startswith("postgresql"):
        made = await _partitions(storage_url) - before
        assert "readings_y2099m01" not in made
        assert len(made) <= 5, sorted(made)  # the future partition, months up to the clock's next
        where = await sql_rows(
            storage_url, "SELECT tableoid::regclass::text FROM readings WHERE t = ?", ahead[0]
        )
        assert where == [(f"readings_y{_t(ahead[0])[:4]}m{_t(ahead[0])[5:7]}",)]
        # Attached again, it has every index of `readings` (the unique one among them).
        attached = "SELECT count(*) FROM pg_index x JOIN pg_inherits i ON i.inhrelid = x.indexrelid"
        parent = "SELECT count(*) FROM pg_index WHERE indrelid = 'readings'::regclass"
        future = f"{attached} WHERE x.indrelid = 'readings_future'::regclass"
        assert await sql_rows(storage_url, future) == await sql_rows(storage_url, parent) != [(0,)]


async def test_months_an_earlier_version_made_ahead_are_folded(postgres_url: str) -> None:
    """A partition an earlier version made for a month past the horizon (2099, a reading
    stamped there) is folded into the future partition when a collector first makes it: the
    month's table goes, its reading stays, with its id."""
    async with open_storage(postgres_url):
        pass
    # As an earlier version left the database: no future partition, a month of 2099.
    await sql_execute(postgres_url, "DROP TABLE readings_future")
    await sql_execute(
        postgres_url,
        "CREATE TABLE readings_y2099m01 PARTITION OF readings"
        " FOR VALUES FROM (4070908800.0) TO (4073587200.0)",
    )
    await sql_execute(
        postgres_url,
        "INSERT INTO readings (gateway, epoch, seq, idx, point, quota, t, value, unit, quality,"
        " flags) VALUES ('g', 'e', 1, 0, 'p', 'q', 4070912400.0, 1.0, 'm', 'good', '[]')",
    )
    (held,) = await sql_rows(postgres_url, "SELECT id FROM readings WHERE t = 4070912400.0")
    async with open_storage(postgres_url):
        pass
    assert "readings_y2099m01" not in await _partitions(postgres_url)
    assert await sql_rows(
        postgres_url, "SELECT id, tableoid::regclass::text FROM readings WHERE t = 4070912400.0"
    ) == [(held[0], "readings_future")]


async def _active(collector: RunningCollector) -> dict[str, tuple[Any, ...]]:
    return await _alarms(collector, active="true")


async def test_an_alarm_raised_ahead_is_active_once_the_collectors_clock_reaches_it(
    broker: Broker, collector: RunningCollector, clock: ManualClock
) -> None:
    """The defect (9b4e25f): the mark set from the collector's clock at arrival kept an alarm
    out of `active` for good. The collector's own clock 16 min slow (its NTP broken): a real
    raise of a right gateway arrives flagged, and once that clock is fixed the alarm, still
    open, was in no list of active alarms until it cleared. Now it is active as soon as its
    raise is no more than ingest.ahead_allowance past the clock asking; the flag stays."""
    raised = NOW + 16 * 60
    async with gateway_link(broker.port, NANCHANG) as link:
        await link.send(1, records=[alarm_record("slow/1", AlarmEvent.RAISE, raised)])
        assert (await link.next_ack()).ack.acked_through == 1
    assert await _active(collector) == {}
    clock.now = raised  # the collector's clock fixed
    assert await _active(collector) == {"slow/1": (_t(raised), None, [AHEAD])}
    assert await _alarms(collector, active="false") == {}


async def test_an_alarm_of_a_gateway_20_min_fast_is_active_once_within_the_allowance(
    broker: Broker, collector: RunningCollector, clock: ManualClock
) -> None:
    """A gateway 20 min fast raises a real alarm: flagged at arrival, not active while its
    raise is more than the allowance (15 min) past the collector's clock, active from the
    moment it is not (5 min later), until it clears."""
    raised = NOW + 20 * 60
    async with gateway_link(broker.port, NANCHANG) as link:
        await link.send(1, records=[alarm_record("fast/1", AlarmEvent.RAISE, raised)])
        assert (await link.next_ack()).ack.acked_through == 1
        clock.now = raised - ALLOWANCE - 1
        assert await _active(collector) == {}
        assert await _alarms(collector, active="false") == {"fast/1": (_t(raised), None, [AHEAD])}
        clock.now = raised - ALLOWANCE
        assert await _active(collector) == {"fast/1": (_t(raised), None, [AHEAD])}
        await link.send(2, records=[alarm_record("fast/1", AlarmEvent.CLEAR, raised + 60)])
        assert (await link.next_ack()).ack.acked_through == 2
    assert await _active(collector) == {}
