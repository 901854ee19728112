"""A flood of junk on the agent's down/ topics writes a bounded number of log lines.

Found in review: the agent logged `command_ignored` for every message on down/cmd it did not
take, and `ack_rejected` for every forged ACK on down/ack, so anyone who may publish there (a
broker without the isolation of docs/security.md) wrote one warning line per message on the
gateway's edge storage, as fast as the agent handled them. Now each reason is logged once a
minute (64 lines at most), and the first line of a later minute comes after a count of the
lines left out (hostkit.log_limit, as the collector's `message_rejected`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
from structlog.testing import capture_logs

from edge_agent.core.trusted_keys import TrustedKeys
from edge_agent.shell.outbox_open import open_outbox
from hostkit.log_limit import LineLimit
from simulators.lifecycle import cancel_task
from specs.signing import signature_properties, signing_key_from_seed
from tests.support.broker import Broker
from tests.support.collector_client import publish_properties
from tests.support.command_desk import command_desk
from tests.support.publisher_rig import (
    COLLECTOR_KEY,
    GATEWAY_KEY,
    SITE,
    TOPICS,
    gateway_publisher,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "tankfarm.yaml"
JUNK = 300
INTRUDER_KEY = signing_key_from_seed(b"i" * 32)


async def _wait_for(logs: Sequence[MutableMapping[str, Any]], event: str, count: int) -> None:
    deadline = time.monotonic() + 30
    while sum(entry["event"] == event for entry in logs) < count:
        assert time.monotonic() < deadline, f"fewer than {count} {event} logged"
        await asyncio.sleep(0.05)


async def test_junk_on_down_topics_writes_few_lines_and_a_count(
    broker: Broker, tmp_path: Path
) -> None:
    ticks = [0.0]  # the limits' monotonic clock, moved on a minute by hand

    def clock() -> float:
        return ticks[0]

    folder = tmp_path / "map"
    folder.mkdir()
    (folder / "site.yaml").write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    trusted = TrustedKeys((COLLECTOR_KEY.public(),))
    desk = command_desk(
        folder, asyncio.Event(), trusted, GATEWAY_KEY.sign, lines=LineLimit(clock=clock)
    )
    with capture_logs() as logs:
        async with open_outbox(tmp_path / "outbox.db", SITE, GATEWAY_KEY) as outbox:
            publisher = gateway_publisher(
                outbox,
                broker.port,
                ack_timeout=30,
                max_inflight=8,
                commands=desk,
                rejected_lines=LineLimit(clock=clock),
            )
            task = asyncio.create_task(publisher.run(), name="publisher")
            try:
                await asyncio.wait_for(publisher.connected.wait(), 10)
                async with aiomqtt.Client(
                    "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
                ) as intruder:
                    for index in range(JUNK):
                        await intruder.publish(TOPICS.cmd, b"junk %d" % index, qos=1)
                        await intruder.publish(TOPICS.ack, b"junk %d" % index, qos=1)
                    # Handled in order: these say (as reasons of their own) that all were.
                    stranger = signature_properties(INTRUDER_KEY.sign(b"last"))
                    await intruder.publish(
                        TOPICS.cmd, b"last", 1, properties=publish_properties(stranger)
                    )
                    undecodable = signature_properties(COLLECTOR_KEY.sign(b"last"))
                    await intruder.publish(
                        TOPICS.ack, b"last", 1, properties=publish_properties(undecodable)
                    )
                    await _wait_for(logs, "command_ignored", 2)
                    await _wait_for(logs, "ack_rejected", 2)
                    ticks[0] += 60
                    await intruder.publish(TOPICS.cmd, b"junk again", qos=1)
                    await intruder.publish(TOPICS.ack, b"junk again", qos=1)
                    await _wait_for(logs, "commands_ignored_unlogged", 1)
                    await _wait_for(logs, "acks_rejected_unlogged", 1)
            finally:
                publisher.stop()
                await cancel_task(task)
    events = [entry["event"] for entry in logs]
    # The junk's reason once a minute, and the last message's.
    assert events.count("command_ignored") == 3, [
        e for e in logs if e["event"] == "command_ignored"
    ]
    assert events.count("ack_rejected") == 3, [e for e in logs if e["event"] == "ack_rejected"]
    counts = {e["event"]: e["count"] for e in logs if e["event"].endswith("_unlogged")}
    assert counts == {"commands_ignored_unlogged": JUNK - 1, "acks_rejected_unlogged": JUNK - 1}
