"""Attacks on the agent's outbox through its ACK topic, on a real Mosquitto.

Only the collector's signed ACK, for this gateway and this epoch, may release a block. An
intruder who can publish on the ACK topic sends forged, modified, replayed (another epoch),
misaddressed and wrong-algorithm ACKs: each is refused with its reason in the agent's log,
and every block stays undelivered, until the collector's own ACK releases them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import structlog

from demo.broker import Broker
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_open import open_outbox
from hostkit.log_limit import LineLimit
from simulators.lifecycle import cancel_task
from specs.ack import Ack
from specs.records import Quality, Reading, iso_time
from specs.signing import SigningKey, signature_properties, signing_key_from_seed
from specs.topics import GatewayTopics
from tests.support.collector_client import publish_properties
from tests.support.publisher_rig import COLLECTOR_KEY, GATEWAY_KEY, SITE, TOPICS, gateway_publisher

pytestmark = pytest.mark.timeout(60)

INTRUDER_KEY = signing_key_from_seed(b"i" * 32)
NEIGHBOUR = GatewayTopics(SITE.district, SITE.enterprise, "91360100MA35GW001H-GW02")
SEALED = 3

AckMessage = tuple[str, bytes, list[tuple[str, str]]]
"""(topic, payload, user properties) as the intruder publishes them."""


def _ack(epoch: str, *, gateway: str = SITE.gateway, through: int = SEALED) -> bytes:
    return Ack(gateway, epoch, through, (), through, iso_time(time.time())).encode()


def _signed(payload: bytes, key: SigningKey = COLLECTOR_KEY) -> list[tuple[str, str]]:
    return signature_properties(key.sign(payload))


def _forged(epoch: str) -> AckMessage:
    payload = _ack(epoch)
    return TOPICS.ack, payload, _signed(payload, INTRUDER_KEY)


def _modified(epoch: str) -> AckMessage:
    # A genuine ACK of one block, stretched to all of them after signing.
    signed_for = _ack(epoch, through=1)
    return TOPICS.ack, _ack(epoch), _signed(signed_for)


def _replayed_from_another_epoch(_: str) -> AckMessage:
    payload = _ack("an-older-epoch")
    return TOPICS.ack, payload, _signed(payload)


def _for_another_gateway(epoch: str) -> AckMessage:
    payload = _ack(epoch, gateway=NEIGHBOUR.gateway)
    return TOPICS.ack, payload, _signed(payload)


def _wrong_algorithm(epoch: str) -> AckMessage:
    payload = _ack(epoch)
    properties = [(k, "rsa-sha256" if k == "alg" else v) for k, v in _signed(payload)]
    return TOPICS.ack, payload, properties


def _unsigned(epoch: str) -> AckMessage:
    return TOPICS.ack, _ack(epoch), []


def _malformed(_: str) -> AckMessage:
    payload = b'{"acked_through": 99999999999999999999999}'
    return TOPICS.ack, payload, _signed(payload)


ATTACKS: tuple[tuple[Callable[[str], AckMessage], str], ...] = (
    (_forged, "key id"),
    (_modified, "does not verify"),
    (_replayed_from_another_epoch, "not for this gateway or epoch"),
    (_for_another_gateway, "not for this gateway or epoch"),
    (_wrong_algorithm, "not allowed"),
    (_unsigned, "is missing"),
    (_malformed, "out of range"),
)
REASONS = tuple(dict.fromkeys(reason for _, reason in ATTACKS))
"""What the log says: each reason once a minute (hostkit.log_limit)."""


@contextlib.asynccontextmanager
async def _agent(tmp_path: Path, broker: Broker) -> AsyncIterator[Outbox]:
    """An outbox with SEALED blocks and its publisher, connected to the broker."""
    async with open_outbox(tmp_path / "outbox.db", SITE, GATEWAY_KEY) as outbox:
        for _ in range(SEALED):
            reading = Reading("T001-LT-01", "WHP-LT", iso_time(time.time()), 1.0, "m", Quality.GOOD)
            await outbox.seal((reading,), now=time.time(), clock_synced=True)
        # One minute of the line limit for the whole test: a minute boundary between two
        # attacks of one reason would log that reason twice.
        one_minute = LineLimit(clock=lambda: 0.0)
        publisher = gateway_publisher(
            outbox, broker.port, ack_timeout=30, max_inflight=10, rejected_lines=one_minute
        )
        task = asyncio.create_task(publisher.run())
        try:
            await asyncio.wait_for(publisher.connected.wait(), 10)
            yield outbox
        finally:
            publisher.stop()
            await cancel_task(task)


async def _undelivered(outbox: Outbox) -> list[int]:
    return [block.seq for block in await outbox.delivery.undelivered(after=0, limit=100)]


async def _logged_until(
    logs: Sequence[MutableMapping[str, Any]], event: str, count: int, timeout: float = 10
) -> list[MutableMapping[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = [entry for entry in logs if entry["event"] == event]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{len(found)} {event} logged, wanted {count}"
        await asyncio.sleep(0.02)


async def test_no_intruders_ack_releases_a_block_and_the_collectors_does(
    tmp_path: Path, broker: Broker
) -> None:
    with structlog.testing.capture_logs() as logs:
        async with (
            _agent(tmp_path, broker) as outbox,
            aiomqtt.Client(
                "127.0.0.1", broker.port, identifier="intruder", protocol=aiomqtt.ProtocolVersion.V5
            ) as intruder,
        ):
            for attack, _ in ATTACKS:
                topic, payload, properties = attack(outbox.epoch)
                await intruder.publish(
                    topic, payload, qos=1, properties=publish_properties(properties)
                )
            # Sent on the neighbour's ACK topic: the agent does not even receive it.
            valid_elsewhere = _ack(outbox.epoch)
            await intruder.publish(
                NEIGHBOUR.ack,
                valid_elsewhere,
                qos=1,
                properties=publish_properties(_signed(valid_elsewhere)),
            )
            rejected = await _logged_until(logs, "ack_rejected", len(REASONS))
            assert await _undelivered(outbox) == list(range(1, SEALED + 1))
            for entry, reason in zip(rejected, REASONS, strict=True):
                assert reason in entry["reason"], entry
            # The collector's own ACK (here signed with its key by the test) releases them.
            genuine = _ack(outbox.epoch)
            await intruder.publish(
                TOPICS.ack, genuine, qos=1, properties=publish_properties(_signed(genuine))
            )
            deadline = time.monotonic() + 10
            while await _undelivered(outbox):
                assert time.monotonic() < deadline, await _undelivered(outbox)
                await asyncio.sleep(0.02)
    assert len([entry for entry in logs if entry["event"] == "ack_rejected"]) == len(REASONS)
