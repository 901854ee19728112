"""Craft, sign and publish gz/1 blocks at a collector, and read its signed ACKs.

For the collector's tests and the end-to-end tests: a `SimGateway` builds real blocks with
`specs.block.encode_block` and signs them with `specs.signing`; a `GatewayLink` is one MQTT 5
connection that publishes them with the signature in user properties (exactly as an agent
does) and collects the ACKs the collector sends back on the gateway's `down/ack` topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from collector.model import Gateway, GatewayKey, KeyGrant
from simulators.lifecycle import cancel_task
from specs.ack import Ack, decode_ack
from specs.block import GENESIS, BlockHeader, block_hash, encode_block
from specs.catalogue import Catalogue, Indicator, UnitConversion, default_catalogue
from specs.identifiers import credit_code_check_character
from specs.meta import GatewayMeta, PointMeta
from specs.records import GapReason, GapRecord, Reading, Record, iso_time
from specs.signing import (
    Signature,
    SigningKey,
    generate_signing_key,
    signature_from_properties,
    signature_properties,
    signing_key_from_seed,
)
from specs.topics import GatewayTopics
from tests.support.config_files import site_head
from tests.support.records import reading_at

BASE_TIME = 1_780_000_000.0  # a fixed wall-clock second (2026-05-28), so tests are repeatable

UserProperties = list[tuple[str, str]]
T = TypeVar("T")


def enterprise_code(district: str, serial: int) -> str:
    """A valid 统一社会信用代码 for a test enterprise in `district`."""
    body = f"91{district}MA{serial:07d}"
    return body + credit_code_check_character(body)


@dataclass(frozen=True)
class SimGateway:
    """A gateway identity with its key: builds and signs blocks the way an agent does."""

    enterprise: str
    district: str
    gateway: str
    key: SigningKey
    domain: str = "WHP"
    mine_code: str | None = None

    @property
    def topics(self) -> GatewayTopics:
        """The gateway's gz/1 topics."""
        return GatewayTopics(self.district, self.enterprise, self.gateway)

    def registration(self, at: float = BASE_TIME) -> tuple[Gateway, GatewayKey]:
        """What `collector gateways add` would register for this gateway."""
        public = self.key.public()
        return (
            Gateway(self.gateway, self.enterprise, self.district, at),
            GatewayKey(public.kid, self.gateway, public.alg, public.public_pem(), at),
        )

    def reading(self, seq: int, index: int = 0, point: str = "T001-LT-01") -> Reading:
        """A deterministic reading: value = seq + index / 10, one second per seq."""
        return reading_at(BASE_TIME + seq % 1_000_000 + index / 100, seq + index / 10, point=point)

    def block(
        self,
        seq: int,
        *,
        epoch: str = "epoch-1",
        records: Sequence[Record] | None = None,
        prev: str = GENESIS,
        header: dict[str, str] | None = None,
    ) -> bytes:
        """Canonical bytes of block `seq` (one reading unless `records` is given).

        `header` overrides header fields (gateway, enterprise, district, ...) to forge blocks.
        """
        fields: dict[str, str] = {
            "gateway": self.gateway,
            "enterprise": self.enterprise,
            "district": self.district,
            "domain": self.domain,
            "epoch": epoch,
            "prev": prev,
            "sealed_at": iso_time(BASE_TIME + seq % 1_000_000),
            "clock": "synced",
        }
        fields |= header or {}
        chosen: list[Record] = [self.reading(seq)] if records is None else list(records)
        return encode_block(BlockHeader(seq=seq, mine_code=self.mine_code, **fields), chosen)

    def meta(self, points: Sequence[PointMeta], *, issued_at: float = BASE_TIME) -> bytes:
        """Canonical bytes of this gateway's signed point catalogue (`up/meta`)."""
        return GatewayMeta(
            gateway=self.gateway,
            enterprise=self.enterprise,
            district=self.district,
            domain=self.domain,
            mine_code=self.mine_code,
            issued_at=iso_time(issued_at),
            points=tuple(points),
        ).encode()

    def site_head(self, broker_port: int, *, uplink: str = "", outbox: str = "") -> str:
        """The head of an agent's site map for this gateway (`config_files.site_head`)."""
        return site_head(
            self.domain,
            enterprise=self.enterprise,
            district=self.district,
            gateway=self.gateway,
            broker_port=broker_port,
            uplink=uplink,
            outbox=outbox,
        )

    def sign(self, payload: bytes, key: SigningKey | None = None) -> UserProperties:
        """The MQTT 5 user properties carrying the signature (by `key`, default our own)."""
        return signature_properties((key or self.key).sign(payload))


def sim_gateway(serial: int = 1, district: str = "360100", number: int = 1) -> SimGateway:
    """A gateway of test enterprise `serial`, with a key derived from its id (repeatable)."""
    enterprise = enterprise_code(district, serial)
    gateway = f"{enterprise}-GW{number:02d}"
    seed = hashlib.sha256(f"gz-test-key/{gateway}".encode()).digest()
    return SimGateway(enterprise, district, gateway, signing_key_from_seed(seed))


MINE_CODE = "610631015"


def coal_gateway(serial: int = 9, district: str = "610631") -> SimGateway:
    """A coal mine's gateway (domain MK, mine code MINE_CODE)."""
    gateway = sim_gateway(serial, district)
    return SimGateway(gateway.enterprise, district, gateway.gateway, gateway.key, "MK", MINE_CODE)


def catalogue_with_coal() -> Catalogue:
    """The shipped catalogue plus fixed coal indicators, so collector tests do not depend on
    how far the catalogue data has grown (the coal entries here are test data)."""
    shipped = default_catalogue()
    level = shipped.get("WHP-LT")
    assert level is not None

    def indicator(
        code: str, names: tuple[str, str], unit: str, *, high: float, alarms: tuple[str, ...]
    ) -> Indicator:
        zh, en = names
        return dataclasses.replace(
            level, code=code, domain="MK", name_zh=zh, name_en=en, unit=unit,
            units={unit: UnitConversion(1.0)}, low=0.0, high=high, alarms=alarms,
            thresholds={}, source="test data",
        )  # fmt: skip

    coal = (
        indicator(
            "MK-M0101", ("甲烷", "methane"), "%CH4", high=100.0, alarms=("alarm", "power_off")
        ),
        indicator(
            "MK-M0104", ("一氧化碳", "carbon monoxide"), "ppm", high=1000.0, alarms=("alarm",)
        ),
    )
    return dataclasses.replace(
        shipped, indicators={**shipped.indicators, **{i.code: i for i in coal}}
    )


def foreign_key() -> SigningKey:
    """A key nobody registered."""
    return generate_signing_key()


def gap_record(
    seq: int,
    lost: int | None = 3,
    reason: GapReason = GapReason.DISK_FULL,
    *,
    epoch: str | None = None,
    from_seq: int | None = None,
    to_seq: int | None = None,
    point: str | None = "T001-LT-01",
) -> GapRecord:
    """A gap record as an agent writes it when it had to drop readings.

    Sealed with block `seq`; the lost readings span the ten seconds before it. `epoch` with
    `from_seq`..`to_seq` declares those seqs lost (`to_seq` None: every seq from `from_seq`).
    """
    t = BASE_TIME + seq % 1_000_000
    return GapRecord(
        t=iso_time(t),
        reason=reason,
        lost=lost,
        t_from=iso_time(t - 10),
        t_to=iso_time(t - 1),
        epoch=epoch,
        from_seq=from_seq,
        to_seq=to_seq,
        point=point,
    )


def key_grants(*gateways: SimGateway) -> dict[str, KeyGrant]:
    """What the ingest looks a signature's kid up in, once these gateways are registered."""
    grants = {}
    for gateway in gateways:
        owner, key = gateway.registration()
        grants[key.kid] = KeyGrant(key, owner)
    return grants


def publish_properties(properties: Sequence[tuple[str, str]]) -> Properties:
    """paho PUBLISH properties with these user properties."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call] # paho lacks hints
    props.UserProperty = list(properties)
    return props


@dataclass(frozen=True)
class SignedAck:
    """An ACK as received: decoded, with its exact bytes and its signature."""

    ack: Ack
    payload: bytes
    signature: Signature


@dataclass
class GatewayLink:
    """One MQTT 5 connection acting as a gateway: sends blocks, collects ACKs.

    Blocks sent with `send` chain like an agent's: `prev` is the hash of the block this link
    sent at seq - 1 of the epoch, or of the default block (`SimGateway.block`) there when it
    sent none, so that blocks of default content chain in any order.
    """

    client: aiomqtt.Client
    gateway: SimGateway
    acks: asyncio.Queue[SignedAck] = field(default_factory=asyncio.Queue)
    sent: dict[tuple[str, int], str] = field(default_factory=dict)
    _defaults: dict[tuple[str, int], str] = field(default_factory=dict)

    def prev(self, seq: int, epoch: str = "epoch-1") -> str:
        """The `prev` that block `seq` of `epoch` carries when sent by `send`."""
        return GENESIS if seq <= 1 else self._hash_at(seq - 1, epoch)

    def _known(self, seq: int, epoch: str) -> str | None:
        return self.sent.get((epoch, seq)) or self._defaults.get((epoch, seq))

    def _hash_at(self, seq: int, epoch: str) -> str:
        """The hash of block `seq` as sent, or of the default block there (chained)."""
        known = self._known(seq, epoch)
        if known is not None:
            return known
        start = seq
        while start > 1 and self._known(start - 1, epoch) is None:
            start -= 1
        for step in range(start, seq + 1):
            below = GENESIS if step == 1 else self._known(step - 1, epoch)
            payload = self.gateway.block(step, epoch=epoch, prev=below or GENESIS)
            self._defaults[(epoch, step)] = block_hash(payload)
        return self._defaults[(epoch, seq)]

    async def publish(
        self,
        payload: bytes,
        properties: Sequence[tuple[str, str]] | None = None,
        *,
        topic: str | None = None,
    ) -> None:
        """Publish a payload on the block topic (or `topic`) at QoS 1, signed by default."""
        await self.client.publish(
            topic or self.gateway.topics.block,
            payload,
            qos=1,
            properties=publish_properties(
                self.gateway.sign(payload) if properties is None else properties
            ),
        )

    async def send(
        self,
        seq: int,
        *,
        epoch: str = "epoch-1",
        records: Sequence[Record] | None = None,
        prev: str | None = None,
    ) -> bytes:
        """Build, sign and publish block `seq` (chained unless `prev` is given); its bytes."""
        chained = self.prev(seq, epoch) if prev is None else prev
        payload = self.gateway.block(seq, epoch=epoch, records=records, prev=chained)
        self.sent[(epoch, seq)] = block_hash(payload)
        self._defaults.clear()  # defaults above seq may have chained onto another block
        await self.publish(payload)
        return payload

    async def next_ack(self, timeout: float = 10.0) -> SignedAck:
        """The next ACK the collector sent to this gateway."""
        return await asyncio.wait_for(self.acks.get(), timeout)

    async def _pump(self) -> None:
        async for message in self.client.messages:
            payload = bytes(message.payload)
            found = getattr(message.properties, "UserProperty", None) or []
            signature = signature_from_properties([(str(k), str(v)) for k, v in found])
            await self.acks.put(SignedAck(decode_ack(payload), payload, signature))


@contextlib.asynccontextmanager
async def gateway_link(port: int, gateway: SimGateway) -> AsyncIterator[GatewayLink]:
    """Connect as `gateway` to the broker on 127.0.0.1:`port`, subscribed to its ACKs."""
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        identifier=f"{gateway.gateway}-{time.monotonic_ns()}",
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:
        await client.subscribe(gateway.topics.ack, qos=1)
        link = GatewayLink(client, gateway)
        pump = asyncio.create_task(link._pump(), name=f"acks-{gateway.gateway}")
        try:
            yield link
        finally:
            await cancel_task(pump)
