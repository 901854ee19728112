"""The uplink's MQTT client: its settings, its CONNECT and the signed properties it sends.

A persistent MQTT 5 session (clean_start off, a session expiry) whose last will is the
gateway's signed offline status, and the user properties that carry a message's detached
signature (and a block's `enc`). What travels over the session is `edge_agent.shell.publisher`.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from hostkit.mqtt import NO_DELAY, CancelSafeClient
from hostkit.mqtt_held import HeldBytes
from specs.encoding import Encoding, encoding_properties
from specs.signing import Signature, signature_properties
from specs.status import GatewayStatus
from specs.topics import GatewayTopics

INCOMING_MESSAGES: Final = 1_000
"""Received messages (ACKs, commands) waiting to be handled; past it they are dropped."""
INCOMING_BYTES: Final = 64 * 1024 * 1024
"""Their bytes (hostkit.mqtt_held); one larger message, a pushed map, still gets through."""


@dataclass(frozen=True, slots=True)
class UplinkSettings:
    """What the publisher needs to know about the link."""

    host: str
    port: int
    client_id: str
    keepalive: float
    session_expiry: float
    ack_timeout: float
    max_inflight: int
    heartbeat: float = 30.0
    publish_rate: float | None = None  # blocks per second; None = as fast as ACKs allow
    tls: ssl.SSLContext | None = None
    # How blocks travel (specs.encoding, the `enc` user property); None: as sealed.
    encoding: Encoding | None = None
    incoming_bytes: int = INCOMING_BYTES


class UplinkClient(CancelSafeClient):
    """The session's client; keeps what the broker's CONNACK says of the largest packet."""

    # MQTT 5 Maximum Packet Size: the broker ends the session of a client that sends a larger
    # packet (Mosquitto's `max_packet_size`). None: the broker set none (MQTT's own 256 MiB).
    maximum_packet_size: int | None = None

    def _on_connect(  # aiomqtt's CONNACK callback, which paho calls
        self,
        client: mqtt.Client,
        userdata: Any,  # noqa: ANN401 - paho's signature
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        size = getattr(properties, "MaximumPacketSize", None)
        self.maximum_packet_size = size if isinstance(size, int) else None
        super()._on_connect(client, userdata, flags, reason_code, properties)

    def too_large(
        self, topic: str, payload: bytes, properties: Properties, collector: int | None
    ) -> Oversize | None:
        """Why a block's PUBLISH may not go; None: it may.

        Over the broker's packet limit, or over the payload the collector takes (`collector`,
        its ACKs' `max_message_bytes`), which it measures as sent (compressed per `enc`) before
        decoding it. Over both, the one that takes more parts.
        """
        found: list[Oversize] = []
        broker = self.maximum_packet_size
        if (
            broker is not None
            and (size := publish_packet_size(topic, payload, properties)) > broker
        ):
            found.append(Oversize(size, broker, broker=True))
        if collector is not None and len(payload) > collector:
            found.append(Oversize(len(payload), collector, broker=False))
        return max(found, key=lambda over: over.parts, default=None)


@dataclass(frozen=True, slots=True)
class Oversize:
    """A block too large to send: its `size` against a `limit`, the broker's or the collector's."""

    size: int
    limit: int
    broker: bool

    @property
    def parts(self) -> int:
        """Blocks to seal its records again in.

        One more than it takes at this ratio, as the records' sizes vary (one still too large
        is split again at its turn).
        """
        return -(-self.size // self.limit) + 1


def publish_packet_size(topic: str, payload: bytes, properties: Properties) -> int:
    """Bytes of a QoS 1 PUBLISH packet whole, as MQTT 5 measures it against that maximum."""
    # Topic (length-prefixed), packet identifier, properties (with their length), payload.
    remaining = 2 + len(topic.encode()) + 2 + len(properties.pack()) + len(payload)  # type: ignore[no-untyped-call]
    length_bytes = 1
    while remaining >= 128**length_bytes:
        length_bytes += 1
    return 1 + length_bytes + remaining


def uplink_client(
    settings: UplinkSettings,
    topics: GatewayTopics,
    sign: Callable[[bytes], Signature],
    held: HeldBytes,
) -> UplinkClient:
    """A client for one session, its will the offline status signed at this connect.

    What it receives and the publisher has not handled is bounded by `held` and
    INCOMING_MESSAGES: anyone who may publish on the gateway's down/ topics (a broker without
    the isolation of docs/security.md) could otherwise fill the agent's memory.
    """
    connect_properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    connect_properties.SessionExpiryInterval = int(settings.session_expiry)
    # Signed now, fired by the broker later: its `t` is this connect time.
    will_payload = GatewayStatus(online=False, t=time.time()).encode()
    will = aiomqtt.Will(
        topics.status,
        will_payload,
        qos=1,
        retain=True,
        properties=signed_properties(sign(will_payload), PacketTypes.WILLMESSAGE),
    )
    return UplinkClient(
        settings.host,
        settings.port,
        identifier=settings.client_id,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        keepalive=int(settings.keepalive),
        properties=connect_properties,
        will=will,
        tls_context=settings.tls,
        socket_options=NO_DELAY,
        max_queued_incoming_messages=INCOMING_MESSAGES,
        queue_type=held.queue_type(),
    )


def signed_properties(
    signature: Signature, packet: int = PacketTypes.PUBLISH, *, encoding: Encoding | None = None
) -> Properties:
    """PUBLISH (or will) properties carrying a detached signature (and the payload's `enc`)."""
    properties = Properties(packet)  # type: ignore[no-untyped-call]
    properties.UserProperty = signature_properties(signature) + encoding_properties(encoding)
    return properties
