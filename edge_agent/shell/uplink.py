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
from typing import Final

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

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


def uplink_client(
    settings: UplinkSettings,
    topics: GatewayTopics,
    sign: Callable[[bytes], Signature],
    held: HeldBytes,
) -> aiomqtt.Client:
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
    return CancelSafeClient(
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
