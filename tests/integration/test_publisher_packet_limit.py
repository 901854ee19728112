"""A block larger than the broker takes, on a real Mosquitto set with `max_packet_size`.

Mosquitto closes the connection of a client that sends a packet over its `max_packet_size`
(a broker from `collector broker-config` sets it from `ingest.max_message_bytes`; EMQX has one
by default), and says the size in its CONNACK (MQTT 5 Maximum Packet Size). The agent did not
look: it sent such a block (one sealed before `outbox.flush_readings` was capped, say), lost
the session, connected again and sent it first again, for ever, and nothing sealed behind it
was delivered. The test plays the collector: it ACKs what it receives, as the collector does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from edge_agent.core.agent_status import MetaStatus
from edge_agent.shell.metrics import AgentMetrics
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_open import open_outbox
from specs.block import decode_block
from specs.records import GapReason, GapRecord, Reading
from tests.support.broker import Broker, free_port
from tests.support.collector_link import FakeCollectorLink, InOrderCollector, collector_link
from tests.support.metric_samples import samples_of, value_of
from tests.support.packet_limit import BIG, LIMIT, tank_reading
from tests.support.publisher_rig import GATEWAY_KEY, SITE, gateway_publisher

pytestmark = pytest.mark.timeout(60)


SMALL = tuple(tank_reading(1000 + i) for i in range(3))


@dataclass
class Sent:
    """What the publisher did: the collector's side of the wire, and its task."""

    link: FakeCollectorLink
    running: asyncio.Task[None]


@contextlib.asynccontextmanager
async def _sending(
    outbox: Outbox, broker: Broker, meta: bytes | None = None, ack_timeout: float = 30
) -> AsyncIterator[Sent]:
    """BIG sealed (seq 1), then each of SMALL (2-4); the publisher runs, the test ACKs."""
    await outbox.seal(BIG, now=time.time(), clock_synced=True)
    for reading in SMALL:
        await outbox.seal((reading,), now=time.time(), clock_synced=True)
    publisher = gateway_publisher(
        outbox, broker.port, ack_timeout=ack_timeout, max_inflight=10, meta=meta
    )
    async with collector_link(broker, outbox.epoch) as link:
        sent = Sent(link, asyncio.create_task(publisher.run()))
        try:
            async with InOrderCollector(link).answering():
                yield sent
        finally:
            publisher.stop()
            sent.running.cancel()
            await asyncio.gather(sent.running, return_exceptions=True)


async def _until(done: Callable[[], Awaitable[bool]], sent: Sent, logs: list[Any]) -> None:
    """Wait until `done` (15 s at most) while the publisher runs."""
    deadline = time.monotonic() + 15
    while not await done():
        lost = sum(entry["event"] == "uplink_lost" for entry in logs)
        assert not sent.running.done(), sent.running.exception()
        assert time.monotonic() < deadline, (
            f"received {sorted(set(sent.link.received))}, sessions lost {lost}"
        )
        await asyncio.sleep(0.05)


def _each_reading_once_and_seq_1_declared(sent: Sent, epoch: str) -> None:
    """What arrived: BIG's and SMALL's readings once each, and seq 1 declared too_large."""
    payloads = sent.link.payloads
    records = [record for payload in payloads for record in decode_block(payload).records]
    arrived = [record for record in records if isinstance(record, Reading)]
    assert sorted(arrived, key=lambda r: r.t) == [*BIG, *SMALL]  # every reading, once
    gaps = [record for record in records if isinstance(record, GapRecord)]
    assert [(g.reason, g.epoch, g.from_seq, g.to_seq, g.lost) for g in gaps] == [
        (GapReason.TOO_LARGE, epoch, 1, 1, 0)
    ]
    assert max(len(payload) for payload in payloads) < LIMIT


async def test_a_block_larger_than_the_broker_takes_is_sealed_again_smaller_and_the_rest_flows(
    tmp_path: Path, small_broker: Broker
) -> None:
    with capture_logs() as logs:
        async with (
            open_outbox(tmp_path / "outbox.db", SITE, GATEWAY_KEY) as outbox,
            _sending(outbox, small_broker) as sent,
        ):

            async def delivered() -> bool:
                return (await outbox.stats()).undelivered == 0

            await _until(delivered, sent, logs)
    _each_reading_once_and_seq_1_declared(sent, outbox.epoch)
    assert not [entry for entry in logs if entry["event"] == "uplink_lost"]
    (split,) = [entry for entry in logs if entry["event"] == "block_too_large_for_broker"]
    assert (split["seq"], split["limit"], split["readings"]) == (1, LIMIT, 400), split


async def test_a_broker_smaller_than_any_block_keeps_the_record_and_seals_nothing(
    tmp_path: Path,
) -> None:
    # max_packet_size 400: the agent's CONNECT fits, no block does (one reading: 709 bytes).
    # A block of one record cannot be split. It was dropped for a gap record declaring it
    # (lost 1), whose block, one record too, was too large in turn and dropped for another
    # (lost 0), for ever: 1,168 seals in 3 s, the reading's declaration itself gone. It is
    # kept, unsent, and goes once a broker takes it.
    workdir = tmp_path / "broker"
    workdir.mkdir()
    broker = Broker(free_port(), workdir, extra_config="max_packet_size 400\n")
    broker.start()
    try:
        with capture_logs() as logs:
            async with open_outbox(tmp_path / "outbox.db", SITE, GATEWAY_KEY) as outbox:
                await outbox.seal((tank_reading(7),), now=time.time(), clock_synced=True)
                publisher = gateway_publisher(outbox, broker.port, ack_timeout=2, max_inflight=10)
                running = asyncio.create_task(publisher.run())
                try:
                    deadline = time.monotonic() + 15
                    while not any(e["event"] == "too_large_record_left" for e in logs):
                        last_seq = (await outbox.stats()).last_seq
                        assert time.monotonic() < deadline, f"last seq {last_seq}, none left"
                        assert not running.done(), running.exception()
                        await asyncio.sleep(0.05)
                    (kept,) = await outbox.delivery.undelivered(after=0, limit=10)
                    assert ((await outbox.stats()).last_seq, kept.seq) == (1, 1)
                    assert decode_block(kept.payload).records == (tank_reading(7),)
                    # The broker restarted without the limit: the record goes as sealed.
                    broker.stop()
                    broker.extra_config = ""
                    broker.start()
                    async with (
                        collector_link(broker, outbox.epoch) as link,
                        InOrderCollector(link).answering(),
                    ):
                        sent = Sent(link, running)

                        async def delivered() -> bool:
                            return (await outbox.stats()).undelivered == 0

                        await _until(delivered, sent, logs)
                finally:
                    publisher.stop()
                    running.cancel()
                    await asyncio.gather(running, return_exceptions=True)
    finally:
        broker.stop()
    assert sent.link.payloads == [kept.payload]
    (left,) = [entry for entry in logs if entry["event"] == "too_large_record_left"]
    assert (left["seq"], left["record"]) == (1, "Reading"), left


async def test_a_block_that_cannot_be_sealed_again_is_left_the_rest_flows_and_it_goes_later(
    tmp_path: Path, small_broker: Broker
) -> None:
    # Sealing it again may fail (a full disk: SQLITE_FULL; here a trigger refuses the delete):
    # the error ended the publisher's task, and the agent with it. It is left, logged, and
    # what follows it is sent. Once the disk has room it goes, in the same session: before,
    # the backlog's cursor had passed it and nothing read it again until the next session
    # (a session may last months; the collector's hole stayed open as long).
    with capture_logs() as logs:
        async with open_outbox(tmp_path / "outbox.db", SITE, GATEWAY_KEY) as outbox:
            await outbox._file.db.execute(
                "CREATE TRIGGER full BEFORE DELETE ON blocks BEGIN SELECT RAISE(ABORT, 'full'); END"
            )
            async with _sending(outbox, small_broker, ack_timeout=2) as sent:

                async def only_the_big_one_waits() -> bool:
                    waiting = await outbox.delivery.undelivered(after=0, limit=9)
                    return [b.seq for b in waiting] == [1]

                async def delivered() -> bool:
                    return (await outbox.stats()).undelivered == 0

                await _until(only_the_big_one_waits, sent, logs)
                assert sorted(set(sent.link.received)) == [2, 3, 4]
                await outbox._file.db.execute("DROP TRIGGER full")  # room again
                await _until(delivered, sent, logs)
    _each_reading_once_and_seq_1_declared(sent, outbox.epoch)
    left = [entry for entry in logs if entry["event"] == "too_large_block_not_sealed_again"]
    assert (left[0]["seq"], left[0]["error"]) == (1, "full"), left
    assert not [entry for entry in logs if entry["event"] == "uplink_lost"]


async def test_a_meta_larger_than_the_broker_takes_is_not_sent_and_the_blocks_flow(
    tmp_path: Path, small_broker: Broker
) -> None:
    # The point catalogue goes first on every connect, ~200 bytes a point: 20 KB for a site of
    # 100 points, over this broker's 16 KiB. Sent, it ended each session before any block went
    # (0 of 4 blocks in 15 s). It cannot be split: it is left out, said, and the blocks go.
    meta = b"m" * 20_000
    with capture_logs() as logs:
        async with (
            open_outbox(tmp_path / "outbox.db", SITE, GATEWAY_KEY) as outbox,
            _sending(outbox, small_broker, meta) as sent,
        ):

            async def delivered() -> bool:
                return (await outbox.stats()).undelivered == 0

            await _until(delivered, sent, logs)
    assert not [entry for entry in logs if entry["event"] == "uplink_lost"]
    left = [entry for entry in logs if entry["event"] == "meta_too_large_for_broker"]
    assert [(entry["limit"], entry["bytes"] > len(meta)) for entry in left] == [(LIMIT, True)]


def _meta_gauge(metrics: AgentMetrics) -> float:
    samples = samples_of(metrics.exposition().decode())
    return value_of(samples, "gz_agent_uplink_meta_too_large")


async def test_a_meta_left_out_shows_in_status_and_metrics_until_a_connect_sends_it(
    tmp_path: Path, small_broker: Broker
) -> None:
    # Left out, the catalogue was said in the log alone: `edge-agent status` and the metrics
    # showed nothing while the collector never got it. They show it, with bytes and limit,
    # until a connect sends it (here: the broker restarted without the limit).
    meta = b"m" * 20_000
    metrics = AgentMetrics([])
    async with open_outbox(tmp_path / "outbox.db", SITE, GATEWAY_KEY) as outbox:
        publisher = gateway_publisher(
            outbox, small_broker.port, ack_timeout=30, max_inflight=10, meta=meta
        )
        running = asyncio.create_task(publisher.run())
        try:
            async with asyncio.timeout(15):
                await publisher.connected.wait()
            left = publisher.meta_status
            assert left is not None
            assert (left.sent, left.limit, left.bytes > len(meta)) == (False, LIMIT, True), left
            await metrics.refresh(outbox, publisher)
            assert _meta_gauge(metrics) == 1.0

            small_broker.stop()
            small_broker.extra_config = ""
            small_broker.start()
            deadline = time.monotonic() + 15
            while publisher.meta_status == left:
                assert not running.done(), running.exception()
                assert time.monotonic() < deadline, "not connected again"
                await asyncio.sleep(0.05)
            assert publisher.meta_status == MetaStatus(sent=True, bytes=left.bytes, limit=None)
            await metrics.refresh(outbox, publisher)
            assert _meta_gauge(metrics) == 0.0
        finally:
            publisher.stop()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
