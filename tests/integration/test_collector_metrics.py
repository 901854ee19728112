"""`GET /metrics`: a whole collector on a real broker, scraped over HTTP, on SQLite and PostgreSQL.

Real signed blocks go through Mosquitto into `run_collector` (what `collector serve` runs);
the scrape is parsed with prometheus_client's own parser, and each DESIGN section 11 figure
is checked against what was sent: blocks by result, readings stored, the ingest lag (on an
injected clock, so exact), gateways online and open gaps (read from the database).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import httpx
import pytest

from collector.config import load_collector_config
from collector.runtime import RunningCollector, run_collector
from collector.storage import prune_storage
from collector.storage.retention import DAY, RetentionPolicy
from specs.records import AlarmEvent, Record
from tests.support.broker import Broker
from tests.support.collector_client import BASE_TIME, GatewayLink, gateway_link, sim_gateway
from tests.support.collector_env import heard_at, keyed_collector_config, register
from tests.support.metric_samples import Samples, samples_of, value_of
from tests.support.records import alarm_record, reading_at

NANCHANG = sim_gateway(1, district="360100")
BEIJING = sim_gateway(2, district="110101")  # registered, never heard from: offline
TOKENS = (("province", "all-token", ("*",)), ("nanchang", "nc-token", ("360100",)))
PROVINCE: Final = {"Authorization": "Bearer all-token"}
NOW: Final = BASE_TIME + 100.0  # the collector's clock; block `seq` is sealed at BASE_TIME + seq
WAIT: Final = 10.0
STORED_RESULTS: Final = ("stored", "unknown_quota", "unknown_unit", "past_retention")


@pytest.fixture
async def collector(
    broker: Broker, tmp_path: Path, storage_url: str
) -> AsyncIterator[RunningCollector]:
    path = await keyed_collector_config(
        tmp_path, broker_port=broker.port, tokens=TOKENS, storage_url=storage_url
    )
    async with run_collector(load_collector_config(path), clock=lambda: NOW) as running:
        await asyncio.wait_for(running.wait_connected(), WAIT)
        await register(running.storage, NANCHANG)
        await register(running.storage, BEIJING)
        yield running


async def _scrape(collector: RunningCollector) -> Samples:
    async with httpx.AsyncClient(base_url=collector.api_url) as http:
        response = await http.get("/metrics", headers=PROVINCE)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return samples_of(response.text)


async def _scrape_until(
    collector: RunningCollector, name: str, value: float, **labels: str
) -> Samples:
    """Scrape until a sample has `value` (the ingest loop commits asynchronously)."""
    async with asyncio.timeout(WAIT):
        while True:
            samples = await _scrape(collector)
            if samples.get((name, tuple(sorted(labels.items())))) == value:
                return samples
            await asyncio.sleep(0.05)


async def _send_acked(link: GatewayLink, *seqs: int) -> None:
    for seq in seqs:
        await link.send(seq)
        await link.next_ack()


async def test_a_fresh_collector_shows_every_figure_at_zero(collector: RunningCollector) -> None:
    samples = await _scrape(collector)
    for result in (*STORED_RESULTS, "duplicate", "seq_conflict", "rejected"):
        assert value_of(samples, "gz_collector_blocks_total", result=result) == 0
    assert value_of(samples, "gz_collector_readings_stored_total") == 0
    assert value_of(samples, "gz_collector_readings_past_retention_total") == 0
    assert value_of(samples, "gz_collector_readings_ahead_of_collector_total") == 0
    assert value_of(samples, "gz_collector_ingest_lag_seconds_count") == 0
    assert value_of(samples, "gz_collector_gateways_online") == 0
    assert value_of(samples, "gz_collector_gaps_open") == 0


async def test_counters_and_gauges_follow_the_blocks_sent(
    broker: Broker, collector: RunningCollector
) -> None:
    async with gateway_link(broker.port, NANCHANG) as link:
        await _send_acked(link, 1, 2, 5)  # 3 and 4 missing: one open gap
        samples = await _scrape(collector)
        assert value_of(samples, "gz_collector_blocks_total", result="stored") == 3
        assert value_of(samples, "gz_collector_readings_stored_total") == 3
        assert value_of(samples, "gz_collector_gateways_online") == 1  # Beijing never spoke
        assert value_of(samples, "gz_collector_gaps_open") == 1

        await _send_acked(link, 3, 4)  # the gap is filled
        await link.publish(link.gateway.block(1))  # a resend of a stored block
        await link.next_ack()
        forged = link.gateway.block(6, prev=link.prev(6))
        await link.publish(forged, link.gateway.sign(b"something else"))
        samples = await _scrape_until(
            collector, "gz_collector_blocks_total", 1.0, result="rejected"
        )
    assert value_of(samples, "gz_collector_blocks_total", result="stored") == 5
    assert value_of(samples, "gz_collector_blocks_total", result="duplicate") == 1
    assert value_of(samples, "gz_collector_blocks_total", result="seq_conflict") == 0
    assert value_of(samples, "gz_collector_readings_stored_total") == 5  # one reading a block
    assert value_of(samples, "gz_collector_gaps_open") == 0
    # Lag of each stored block: NOW - (BASE_TIME + seq); the duplicate and the forgery: none.
    assert value_of(samples, "gz_collector_ingest_lag_seconds_count") == 5
    assert value_of(samples, "gz_collector_ingest_lag_seconds_sum") == sum(
        100 - s for s in range(1, 6)
    )
    assert value_of(samples, "gz_collector_ingest_lag_seconds_bucket", le="60.0") == 0
    assert value_of(samples, "gz_collector_ingest_lag_seconds_bucket", le="300.0") == 5


async def test_metrics_need_a_token_of_every_district(collector: RunningCollector) -> None:
    async with httpx.AsyncClient(base_url=collector.api_url) as http:
        anonymous = await http.get("/metrics")
        scoped = await http.get("/metrics", headers={"Authorization": "Bearer nc-token"})
        wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert scoped.status_code == 403
    assert scoped.headers["content-type"] == "application/problem+json"
    assert "districts" in scoped.json()["detail"]
    assert "gz_collector" not in anonymous.text + scoped.text + wrong.text


async def test_readings_refused_as_past_retention_are_not_counted_stored(
    broker: Broker, collector: RunningCollector, storage_url: str
) -> None:
    """The defect (found by the lead's review of d668b43): a block whose readings of a pruned
    month ingest left out (audited past_retention) was counted result="stored" and all its
    readings in gz_collector_readings_stored_total, though none of them was stored. It is
    counted result="past_retention" (stored, readings left out, as unknown_quota is), and
    the readings left out apart from those stored."""
    later = BASE_TIME + 100 * DAY
    async with gateway_link(broker.port, NANCHANG) as link:
        await link.send(1, records=[reading_at(BASE_TIME, 1.0)])
        await link.next_ack()
        await link.send(2, records=[reading_at(later, 2.0)])
        await link.next_ack()
        # May's readings go; from now on a reading of May is refused. (The collector's clock
        # stays at NOW, so `later` is stored ahead of it, no measure of the province's newest.)
        await heard_at(storage_url, NANCHANG.gateway, later)
        await prune_storage(storage_url, RetentionPolicy(raw_days=30), later)
        old = [reading_at(BASE_TIME + 1, 1.5), reading_at(BASE_TIME + 2, 1.6)]
        await link.send(3, records=[*old, reading_at(later + 1, 2.5)])
        await link.next_ack()
        samples = await _scrape(collector)
    assert value_of(samples, "gz_collector_blocks_total", result="stored") == 2
    assert value_of(samples, "gz_collector_blocks_total", result="past_retention") == 1
    assert value_of(samples, "gz_collector_readings_stored_total") == 3
    assert value_of(samples, "gz_collector_readings_past_retention_total") == 2


async def test_blocks_with_a_record_left_out_for_its_quota_or_unit_are_not_counted_stored(
    broker: Broker, collector: RunningCollector, storage_url: str
) -> None:
    """The defect (found by the lead's review of de0985d): a stored block whose reading or
    alarm event ingest left out for an unknown quota or unit (audited unknown_quota,
    unknown_unit) was counted result="stored", though metrics.md promised the results
    unknown_quota and unknown_unit; nothing ever counted them. A block counts once, under
    the first of unknown_quota, unknown_unit, past_retention it has (metrics.md)."""
    later = BASE_TIME + 100 * DAY
    nope = reading_at(later + 1, 1.0, point="X-1", quota="WHP-NOPE")
    furlong = reading_at(later + 2, 2.0, point="X-2", unit="furlong")
    nope_alarm = alarm_record("x-1", AlarmEvent.RAISE, later + 3, quota="WHP-NOPE")
    may = reading_at(BASE_TIME + 1, 1.5)
    blocks: list[list[Record]] = [
        [reading_at(BASE_TIME, 1.0)],  # stored
        [reading_at(later, 2.0)],  # stored
        # Retention runs here: from now on a reading of May is left out as past_retention.
        [nope, reading_at(later + 10, 3.0)],  # unknown_quota
        [furlong, reading_at(later + 11, 3.0)],  # unknown_unit
        [nope_alarm, reading_at(later + 12, 3.0)],  # unknown_quota (an alarm event)
        [furlong, nope, may, reading_at(later + 13, 3.0)],  # all three: unknown_quota
        [may, furlong],  # unknown_unit before past_retention
        [may, reading_at(later + 14, 3.0)],  # past_retention
    ]
    async with gateway_link(broker.port, NANCHANG) as link:
        for seq, records in enumerate(blocks, start=1):
            if seq == 3:
                await heard_at(storage_url, NANCHANG.gateway, later)  # `later` is ahead of NOW
                await prune_storage(storage_url, RetentionPolicy(raw_days=30), later)
            await link.send(seq, records=records)
            await link.next_ack()
        samples = await _scrape(collector)
    counted = {r: value_of(samples, "gz_collector_blocks_total", result=r) for r in STORED_RESULTS}
    assert counted == {"stored": 2, "unknown_quota": 3, "unknown_unit": 2, "past_retention": 1}
    # Readings left out for their quota or unit were never counted stored; May's apart.
    assert value_of(samples, "gz_collector_readings_stored_total") == 7
    assert value_of(samples, "gz_collector_readings_past_retention_total") == 3
