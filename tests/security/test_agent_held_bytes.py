"""What the agent has received on its down/ topics and not yet handled is bounded in bytes.

Found by the long-run hostile test: the uplink's MQTT client queued received messages without
any bound, so anyone who may publish on a gateway's down/ topics (a broker without the
isolation of docs/security.md: configs/*.yaml use mqtt://) filled the agent's memory. 400
messages of 2 MB on down/ack and down/cmd, published at QoS 0, took a real `edge-agent run`
from 55 MiB to 620 MiB RSS and still growing, the agent handling about 16 a second.

Here the publisher's command inbox is held busy (as a map check or a slow disk would) while
messages of 1 MiB arrive on down/cmd; once it is free, only what fits `incoming_bytes` was
kept (the rest dropped, for the collector to send again), so only those few reach it.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import aiomqtt

from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.publisher import Publisher
from edge_agent.shell.uplink import UplinkSettings
from simulators.lifecycle import cancel_task
from tests.support.broker import Broker
from tests.support.publisher_rig import COLLECTOR_KEY, GATEWAY_KEY, SITE, TOPICS

MIB = 1024 * 1024
SENT = 40
HELD = 4 * MIB
AT_MOST = HELD // MIB + 2  # held up to HELD (the last one crosses it), plus the one in hand


class BusyInbox:
    """A command inbox that takes nothing until it is let go, then counts what it gets."""

    def __init__(self) -> None:
        self.free = asyncio.Event()
        self.taken = 0

    async def on_command(self, payload: bytes, properties: list[tuple[str, str]] | None) -> None:
        await self.free.wait()
        self.taken += len(payload) > 0 and properties is None  # as sent: 1 MiB, unsigned


async def test_messages_waiting_for_a_busy_agent_are_bounded_in_bytes(
    broker: Broker, tmp_path: Path
) -> None:
    inbox = BusyInbox()
    async with open_outbox(tmp_path / "outbox.db", SITE, GATEWAY_KEY) as outbox:
        settings = UplinkSettings(
            "127.0.0.1", broker.port, SITE.gateway, 30, 60, 30, 8, incoming_bytes=HELD
        )
        publisher = Publisher(
            outbox,
            TOPICS,
            COLLECTOR_KEY.public(),
            settings,
            lambda: itertools.repeat(0.2),
            sign=GATEWAY_KEY.sign,
            commands=inbox,
        )
        task = asyncio.create_task(publisher.run(), name="publisher")
        try:
            await asyncio.wait_for(publisher.connected.wait(), 10)
            async with aiomqtt.Client("127.0.0.1", broker.port) as sender:
                for index in range(SENT):
                    await sender.publish(TOPICS.cmd, bytes([index]) * MIB, qos=1)
            await asyncio.sleep(1.0)  # the broker hands them on to the busy agent
            inbox.free.set()
            await asyncio.sleep(1.0)  # whatever was held reaches the inbox by now
        finally:
            publisher.stop()
            await cancel_task(task)
    assert 0 < inbox.taken <= AT_MOST, f"{inbox.taken} of {SENT} 1 MiB commands were held"
