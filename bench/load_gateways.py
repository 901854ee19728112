"""bench/load.py's simulated gateways: each its own key, hash chain, MQTT connection and topics.

A gateway seals one poll cycle into a signed block exactly as an agent does, publishes it at
QoS 1, takes the collector's ACKs on its own `down/ack`, and resends a block unacknowledged
after ACK_TIMEOUT, as an agent would (also while the run drains).
"""

from __future__ import annotations

import asyncio
import time
import zlib
from dataclasses import dataclass, field

import aiomqtt
from paho.mqtt.properties import Properties

from bench.collector import DISTRICT
from specs.ack import decode_ack
from specs.block import GENESIS, BlockHeader, block_hash, encode_block
from specs.identifiers import credit_code_check_character
from specs.records import Quality, Reading, iso_time
from specs.signing import SigningKey, generate_signing_key, signature_properties
from specs.topics import GatewayTopics
from tests.support.collector_client import publish_properties

ACK_TIMEOUT = 15.0  # an agent's default uplink.ack_timeout
ZLIB_SAMPLE = 16  # compress every 16th block to measure zlib-6 bytes, not all of them


@dataclass(frozen=True)
class Pending:
    """A block waiting for its ACK."""

    poll_t: float
    sent_at: float
    payload: bytes
    properties: Properties
    readings: int


@dataclass
class SimGateway:
    """A simulated gateway: identity, chain state, and what is waiting for an ACK."""

    enterprise: str
    gateway: str
    key: SigningKey
    seq: int = 0
    prev: str = GENESIS
    pending: dict[int, Pending] = field(default_factory=dict)

    @property
    def topics(self) -> GatewayTopics:
        """Its gz/1 topics."""
        return GatewayTopics(DISTRICT, self.enterprise, self.gateway)

    def seal(self, t: float, points: int) -> tuple[int, bytes, list[tuple[str, str]]]:
        """One poll cycle of `points` readings at `t` as the next signed block."""
        self.seq += 1
        stamp = iso_time(t)  # one poll cycle: every reading shares its time
        readings = [
            Reading(
                point=f"T{p:03d}-LT-01",
                quota="WHP-LT",
                t=stamp,
                value=round(1.0 + ((self.seq * 7 + p) % 997) * 0.01, 3),
                unit="m",
                quality=Quality.GOOD,
            )
            for p in range(points)
        ]
        header = BlockHeader(
            self.gateway, self.enterprise, DISTRICT, "WHP", "load0epoch",
            self.seq, self.prev, stamp, "synced",
        )  # fmt: skip
        payload = encode_block(header, readings)
        self.prev = block_hash(payload)
        return self.seq, payload, signature_properties(self.key.sign(payload))


def sim_gateway(serial: int) -> SimGateway:
    """Gateway number `serial` of the run, with a fresh key."""
    body = f"91{DISTRICT}MB{serial:07d}"
    enterprise = body + credit_code_check_character(body)
    return SimGateway(enterprise, f"{enterprise}-GW01", generate_signing_key())


@dataclass
class Counters:
    """Monotonic counts the windows difference; latencies as (ACK arrival, latency)."""

    sealed_blocks: int = 0
    sealed_readings: int = 0
    published: int = 0
    resends: int = 0
    acks: int = 0
    acked_blocks: int = 0
    acked_readings: int = 0
    wire_bytes: int = 0
    zlib_bytes: int = 0  # of the sampled blocks (every ZLIB_SAMPLE-th), with their readings
    zlib_readings: int = 0
    ack_bytes: int = 0
    seal_lag_max: float = 0.0
    latencies: list[tuple[float, float]] = field(default_factory=list)
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)


def _wire_size(topic: str, payload: bytes, user: list[tuple[str, str]]) -> int:
    """Bytes of a PUBLISH's topic, payload and user properties (MQTT framing left out)."""
    return len(topic) + len(payload) + sum(len(k) + len(v) + 4 for k, v in user)


async def gateway_loop(
    gw: SimGateway,
    client: aiomqtt.Client,
    c: Counters,
    *,
    points: int,
    interval: float,
    first_due: float,
) -> None:
    """Seal and publish a block every `interval` from `first_due`; resend; end when drained."""
    due = first_due
    # After `stop` it seals no more but keeps resending, as an agent would, until drained.
    while not c.drained.is_set():
        await asyncio.sleep(max(0.0, due - time.time()))
        now = time.time()
        if not c.stop.is_set():
            c.seal_lag_max = max(c.seal_lag_max, now - due)
            await _seal_and_publish(gw, client, points, due, c)
        for old, p in list(gw.pending.items()):
            if now - p.sent_at > ACK_TIMEOUT:
                gw.pending[old] = Pending(p.poll_t, now, p.payload, p.properties, p.readings)
                c.resends += 1
                c.published += 1
                await client.publish(gw.topics.block, p.payload, qos=1, properties=p.properties)
        due += interval


async def _seal_and_publish(
    gw: SimGateway, client: aiomqtt.Client, points: int, due: float, c: Counters
) -> None:
    seq, payload, user = gw.seal(due, points)
    props = publish_properties(user)
    gw.pending[seq] = Pending(due, time.time(), payload, props, points)
    c.sealed_blocks += 1
    c.sealed_readings += points
    c.wire_bytes += _wire_size(gw.topics.block, payload, user)
    if c.sealed_blocks % ZLIB_SAMPLE == 0:
        c.zlib_bytes += _wire_size(gw.topics.block, zlib.compress(payload, 6), user)
        c.zlib_readings += points
    c.published += 1
    await client.publish(gw.topics.block, payload, qos=1, properties=props)


async def take_acks(gw: SimGateway, client: aiomqtt.Client, c: Counters) -> None:
    """Release what each ACK on the gateway's `down/ack` covers; time it from poll."""
    async for message in client.messages:
        ack = decode_ack(bytes(message.payload))
        now = time.time()
        c.acks += 1
        user = getattr(message.properties, "UserProperty", None) or []
        c.ack_bytes += _wire_size(message.topic.value, bytes(message.payload), user)
        for seq in [s for s in gw.pending if s <= ack.acked_through]:
            p = gw.pending.pop(seq)
            c.latencies.append((now, now - p.poll_t))
            c.acked_blocks += 1
            c.acked_readings += p.readings
        if c.stop.is_set() and c.acked_blocks == c.sealed_blocks:
            c.drained.set()
