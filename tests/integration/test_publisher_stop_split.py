"""A graceful stop waits for the blocks a live block's readings were sealed again in.

The stop (edge_agent.shell.shutdown) waits, within its bound, until the live blocks are sent
and ACKed (`Lanes.is_settled`). A live block too large for the broker is not sent: its records
are sealed again in smaller blocks at the head (`outbox_oversize`), with no live notice. The
stop counted them nowhere and went on at once: the last readings polled stayed in the outbox
until the next start. Here on a real Mosquitto set with `max_packet_size`, the real sealer and
the real stop; the test plays the collector, ACKing what it receives as the collector does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge_agent.shell.buses import RtuBuses
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_reads import StoredBlock
from edge_agent.shell.sealer import Sealer
from edge_agent.shell.shutdown import shut_down
from specs.records import Record
from tests.support.broker import Broker
from tests.support.collector_link import InOrderCollector, collector_link
from tests.support.packet_limit import BIG
from tests.support.publisher_rig import GATEWAY_KEY, SITE, gateway_publisher

pytestmark = pytest.mark.timeout(60)

# `small_broker` (tests/support/packet_limit.py): a Mosquitto that takes 16 KiB packets at
# most; BIG, ~60 KB, goes in 5 parts.


async def test_a_stop_right_after_a_live_block_is_split_waits_for_its_parts(
    tmp_path: Path, small_broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    with capture_logs() as logs:
        async with (
            open_outbox(tmp_path / "outbox.db", SITE, GATEWAY_KEY) as outbox,
            collector_link(small_broker, outbox.epoch) as link,
        ):
            publisher = gateway_publisher(outbox, small_broker.port, ack_timeout=30, max_inflight=4)
            queue: asyncio.Queue[Record] = asyncio.Queue()
            sealer = Sealer(
                outbox,
                queue,
                flush_interval=0.05,
                flush_readings=len(BIG),
                clock_synced=lambda: True,
                on_sealed=lambda block: publisher.notify_sealed(block.seq),
            )
            # The stop comes as the block's parts are sealed (the publisher's split), not when a
            # poll of the logs finds the split: by then, under load, all could be ACKed.
            split = asyncio.Event()
            seal_smaller = outbox.delivery.seal_smaller

            async def sealed_smaller(
                block: StoredBlock, parts: int, *, now: float, clock_synced: bool
            ) -> tuple[int, ...]:
                try:
                    return await seal_smaller(block, parts, now=now, clock_synced=clock_synced)
                finally:
                    split.set()

            monkeypatch.setattr(outbox.delivery, "seal_smaller", sealed_smaller)
            collector = InOrderCollector(link)
            async with collector.answering():
                sending = asyncio.create_task(publisher.run(), name="publisher")
                sealing = asyncio.create_task(sealer.run(), name="sealer")
                await asyncio.wait_for(publisher.connected.wait(), 10)
                for reading in BIG:
                    queue.put_nowait(reading)
                try:
                    async with asyncio.timeout(15):  # no task between: woken by the set itself
                        await split.wait()
                except TimeoutError:
                    pytest.fail("the live block was never split")
                # systemd's SIGTERM, right after the split. This task is woken in the loop's
                # turn after the one that sealed the parts, before any I/O since: none has
                # reached the collector, so the stop has parts to wait for (the fix's case).
                assert not collector.stored, "a part reached the collector before the stop"
                await shut_down(
                    gateway=SITE.gateway,
                    poll_tasks=[],
                    service_tasks=[sealing, sending],
                    buses=RtuBuses(),
                    queue=queue,
                    sealer=sealer,
                    publisher=publisher,
                )
            undelivered = (await outbox.stats()).undelivered
    (too_large,) = [e for e in logs if e["event"] == "block_too_large_for_broker"]
    assert (too_large["seq"], too_large["parts"]) == (1, 5), too_large
    (stopped,) = [e for e in logs if e["event"] == "agent_stopped"]
    assert undelivered == 0, f"left in the outbox after the stop: {undelivered} blocks; {stopped}"
    assert stopped["live_acked"] is True, stopped
    assert stopped["seconds"] < 4, stopped  # within the stop's budget (SHUTDOWN_BUDGET)
