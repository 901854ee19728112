"""Broker isolation on a real Mosquitto run from what `collector broker-config` writes.

DESIGN section 11: only certificates of the province CA get in, and a gateway's certificate
reaches its own topics only. Every refusal is the broker's own, observed:

- a TLS refusal as the alert the broker sends (TLS 1.2 probe) and as a failed MQTT connect;
- a publish the ACL forbids as its PUBACK reason 0x87 (Not authorized), and as nothing
  arriving at a legitimate subscriber that does receive a control message published after;
- a read the ACL forbids as nothing arriving at the forbidden subscriber, while the
  legitimate one receives the same message (Mosquitto 2.0 grants every SUBSCRIBE and
  checks read access per delivered message).

The certificates, config and ACL come from the real commands (`certs ca init`, `certs issue`,
`broker-config`); an expired certificate is issued through the library with a validity
wholly in the past.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from collector.config import IngestConfig
from collector.pki.certificates import (
    Validity,
    create_ca,
    issue_client,
    validity_from,
)
from collector.pki.mosquitto import PACKET_HEADROOM
from collector.pki.store import load_ca, write_issued
from specs.topics import ROOT, GatewayTopics, collector_subscription
from tests.e2e.harness import wait_until
from tests.support.broker import free_port
from tests.support.collector_env import collector_cli
from tests.support.tls_broker import ConfiguredBroker

DISTRICT = "360100"
ENTERPRISE = "91360100MA35GW001H"
GATEWAY_A = f"{ENTERPRISE}-GW01"
GATEWAY_B = f"{ENTERPRISE}-GW02"
A = GatewayTopics(DISTRICT, ENTERPRISE, GATEWAY_A)
B = GatewayTopics(DISTRICT, ENTERPRISE, GATEWAY_B)
NOT_AUTHORIZED = 0x87
COLLECTORS = ("gz-collector-1", "gz-collector-2")
DELIVERY_TIMEOUT = 10.0


def cli(*args: str) -> str:
    result = collector_cli(*args)
    assert result.exit_code == 0, result.output
    return result.stdout


@dataclass
class Pki:
    """The folders the commands wrote: the CA, the gateways' and the broker's files."""

    work: Path
    broker: ConfiguredBroker
    config: Path

    @property
    def ca_dir(self) -> Path:
        return self.work / "pki" / "ca"

    @property
    def gateways(self) -> Path:
        return self.work / "gateways"

    @property
    def ca_file(self) -> Path:
        return self.broker.workdir / "ca.crt"

    def context(self, name: str, folder: Path | None = None) -> ssl.SSLContext:
        """A client context that trusts the province CA and shows `folder/name.crt`."""
        folder = folder or self.gateways
        context = ssl.create_default_context(cafile=self.ca_file)
        context.load_cert_chain(folder / f"{name}.crt", folder / f"{name}.key")
        return context

    def collector_context(self, identity: str = COLLECTORS[0]) -> ssl.SSLContext:
        return self.context(identity, self.broker.workdir)


def write_config(work: Path, port: int) -> Path:
    config = {
        "broker": f"mqtts://127.0.0.1:{port}",
        "broker_tls": {
            "ca": "broker/ca.crt",
            "cert": f"broker/{COLLECTORS[0]}.crt",
            "key": f"broker/{COLLECTORS[0]}.key",
        },
        "certs": {"ca_dir": "pki/ca"},
        "storage": {"url": "sqlite:///state/collector.db"},
        "signing": {"key_file": "keys/collector.key"},
        "api": {"listen": f"127.0.0.1:{free_port()}"},
    }
    path = work / "collector.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture
def pki(tmp_path: Path) -> Iterator[Pki]:
    """The CA, certificates for gateways A and B, and the broker they make, running."""
    port = free_port()
    config = str(write_config(tmp_path, port))
    cli("certs", "ca", "init", "-c", config)
    for gateway in (GATEWAY_A, GATEWAY_B):
        cli("certs", "issue", "-c", config, "--gateway", gateway, "--out", "gateways")
    out = tmp_path / "broker"
    cli(
        "broker-config", "-c", config, "--listen", f"127.0.0.1:{port}", "--out", str(out),
        "--collector", COLLECTORS[0], "--collector", COLLECTORS[1],
    )  # fmt: skip
    broker = ConfiguredBroker(port=port, workdir=out)
    broker.start()
    yield Pki(tmp_path, broker, tmp_path / "collector.yaml")
    broker.stop()


@pytest.fixture(autouse=True)
def _relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `certs issue --out gateways` is relative to where it runs, as at a shell.
    monkeypatch.chdir(tmp_path)


@contextlib.asynccontextmanager
async def connect(
    pki: Pki, context: ssl.SSLContext, identifier: str
) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        "127.0.0.1",
        pki.broker.port,
        identifier=identifier,
        tls_context=context,
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:
        yield client


class PubackReasons:
    """The reason code of every PUBACK a client receives (aiomqtt drops them)."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.codes: list[int] = []
        paho = client._client
        forward = client._on_publish

        def on_publish(
            paho_client: mqtt.Client,
            userdata: Any,
            mid: int,
            reason: ReasonCode,
            properties: Properties,
        ) -> None:
            self.codes.append(reason.value)
            forward(paho_client, userdata, mid, reason, properties)

        paho.on_publish = on_publish

    async def publish(self, client: aiomqtt.Client, topic: str, payload: bytes) -> int:
        """Publish at QoS 1; return the PUBACK's reason code."""
        await client.publish(topic, payload, qos=1)
        return self.codes[-1]


def reason_values(codes: Sequence[int | ReasonCode]) -> list[int]:
    """SUBACK codes as numbers (1: granted QoS 1; 0x80 and up: refused)."""
    return [code.value if isinstance(code, ReasonCode) else code for code in codes]


async def received_until(client: aiomqtt.Client, control_topic: str) -> list[tuple[str, bytes]]:
    """Every message up to and including the first on `control_topic`."""
    found: list[tuple[str, bytes]] = []
    async with asyncio.timeout(DELIVERY_TIMEOUT):
        async for message in client.messages:
            found.append((message.topic.value, bytes(message.payload)))
            if message.topic.value == control_topic:
                return found
    raise AssertionError("the subscription ended")


async def test_a_gateway_cannot_publish_on_another_gateways_topics(pki: Pki) -> None:
    async with (
        connect(pki, pki.collector_context(), "collector-1") as collector,
        connect(pki, pki.context(GATEWAY_A), "gateway-a") as gateway_a,
    ):
        await collector.subscribe(collector_subscription("gz-collectors"), qos=1)
        await collector.subscribe(f"{ROOT}/+/+/+/status", qos=1)
        pubacks = PubackReasons(gateway_a)
        for topic in (B.block, B.meta, B.status, f"{B.base}/up/cmd"):
            assert await pubacks.publish(gateway_a, topic, b"forged") == NOT_AUTHORIZED, topic
        # Nor may a gateway publish downstream, even on its own topics (forged ACKs).
        assert await pubacks.publish(gateway_a, A.ack, b"forged") == NOT_AUTHORIZED
        # Its own topics are open to it, and the collector receives what it sends there.
        assert await pubacks.publish(gateway_a, A.status, b"own status") == 0
        assert await pubacks.publish(gateway_a, A.block, b"control") == 0
        received = await received_until(collector, A.block)
    assert received == [(A.status, b"own status"), (A.block, b"control")]


async def test_a_gateway_cannot_read_another_gateways_acks(pki: Pki) -> None:
    async with (
        connect(pki, pki.collector_context(), "collector-1") as collector,
        connect(pki, pki.context(GATEWAY_A), "gateway-a") as gateway_a,
        connect(pki, pki.context(GATEWAY_B), "gateway-b") as gateway_b,
    ):
        # Mosquitto 2.0 grants these; what it delivers is checked message by message.
        granted = await gateway_a.subscribe(f"gz/1/+/+/{GATEWAY_B}/down/#", qos=1)
        assert reason_values(granted) == [1]
        await gateway_a.subscribe("gz/1/#", qos=1)
        await gateway_a.subscribe(f"gz/1/+/+/{GATEWAY_A}/down/#", qos=1)
        await gateway_b.subscribe(f"gz/1/+/+/{GATEWAY_B}/down/#", qos=1)
        pubacks = PubackReasons(collector)
        assert await pubacks.publish(collector, B.ack, b"ack for B") == 0
        assert await pubacks.publish(collector, B.cmd, b"cmd for B") == 0
        assert await pubacks.publish(collector, A.ack, b"control") == 0
        seen_by_b = await received_until(gateway_b, B.cmd)
        seen_by_a = await received_until(gateway_a, A.ack)
    assert seen_by_b == [(B.ack, b"ack for B"), (B.cmd, b"cmd for B")]
    # A receives its own ACK (once per matching subscription) and nothing of B's.
    assert {topic for topic, _ in seen_by_a} == {A.ack}


async def test_the_collectors_share_one_subscription_and_write_downstream_only(pki: Pki) -> None:
    group = collector_subscription("gz-collectors")
    async with (
        connect(pki, pki.collector_context(COLLECTORS[0]), "collector-1") as first,
        connect(pki, pki.collector_context(COLLECTORS[1]), "collector-2") as second,
        connect(pki, pki.context(GATEWAY_A), "gateway-a") as gateway_a,
    ):
        for collector in (first, second):
            granted = await collector.subscribe(group, qos=1)
            assert reason_values(granted) == [1]
        await gateway_a.subscribe(f"gz/1/+/+/{GATEWAY_A}/down/#", qos=1)
        sent = {f"block {n}".encode() for n in range(4)}
        for payload in sorted(sent):
            await gateway_a.publish(A.block, payload, qos=1)

        async def blocks_of(client: aiomqtt.Client) -> set[bytes]:
            got: set[bytes] = set()
            async with asyncio.timeout(DELIVERY_TIMEOUT):
                async for message in client.messages:
                    got.add(bytes(message.payload))
                    if len(got) == len(sent) // 2:  # strict round robin: half each
                        return got
            return got

        # Round robin between the members: each receives half of the blocks, none twice.
        got_first, got_second = await asyncio.gather(blocks_of(first), blocks_of(second))
        assert got_first | got_second == sent
        assert got_first.isdisjoint(got_second)
        pubacks = PubackReasons(first)
        # The collectors' identity cannot forge what a gateway sends.
        assert await pubacks.publish(first, A.block, b"forged block") == NOT_AUTHORIZED
        assert await pubacks.publish(first, A.status, b"forged status") == NOT_AUTHORIZED
        assert await pubacks.publish(first, A.ack, b"ack") == 0
        assert await received_until(gateway_a, A.ack) == [(A.ack, b"ack")]


async def blocks_received(client: aiomqtt.Client, count: int) -> set[bytes]:
    """The first `count` payloads `client` receives, then any more within half a second."""
    got: set[bytes] = set()
    async with asyncio.timeout(DELIVERY_TIMEOUT):
        while len(got) < count:
            got.add(bytes((await anext(aiter(client.messages))).payload))
    with contextlib.suppress(TimeoutError):
        while True:
            async with asyncio.timeout(0.5):
                got.add(bytes((await anext(aiter(client.messages))).payload))
    return got


@pytest.mark.parametrize(
    ("collectors_group", "taken"), [("gz-collectors", 3), ("9f3c0a7e51d24b6c8e0f1a2b3c4d5e6f", 0)]
)
async def test_a_gateway_in_the_collectors_group_takes_its_turns(
    pki: Pki, collectors_group: str, taken: int
) -> None:
    """Mosquitto 2.0 checks read rights after picking a group member: a limitation.

    A gateway subscribed to the default group is handed every second block and may read none
    of them, so they reach nobody. A group name it cannot guess keeps it out (security.md).
    """
    async with (
        connect(pki, pki.collector_context(COLLECTORS[0]), "collector-1") as collector,
        connect(pki, pki.context(GATEWAY_A), "gateway-a") as gateway_a,
        connect(pki, pki.context(GATEWAY_B), "gateway-b") as gateway_b,
    ):
        await collector.subscribe(collector_subscription(collectors_group), qos=1)
        assert reason_values(
            await gateway_b.subscribe(collector_subscription("gz-collectors"))
        ) == [0]
        sent = {f"block {n}".encode() for n in range(6)}
        for payload in sorted(sent):
            await gateway_a.publish(A.block, payload, qos=1)
        got = await blocks_received(collector, len(sent) - taken)
    assert got <= sent
    assert len(sent - got) == taken


def probe(pki: Pki, context: ssl.SSLContext) -> str:
    """The alert the broker answers a TLS 1.2 handshake with ("" when it accepts).

    Under TLS 1.3 the client's certificate is checked after the client's handshake ends
    and Mosquitto 2.0.11 closes without an alert a client can read; TLS 1.2 shows why.
    """
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", pki.broker.port), timeout=10) as raw:
        try:
            context.wrap_socket(raw, server_hostname="127.0.0.1").close()
        except ssl.SSLError as exc:
            return str(exc.reason)
    return ""


CONNACK_ACCEPTED = bytes.fromhex("20020000")
WILL_QOS1_RETAIN = 0x2C


def mqtt_string(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


def connect_packet(client_id: str, will: tuple[str, bytes] | None = None) -> bytes:
    """An MQTT 3.1.1 CONNECT: clean session, keep-alive 60 s, and a retained QoS 1 will."""
    flags = 0x02 | (WILL_QOS1_RETAIN if will else 0)
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + b"\x00\x3c" + mqtt_string(client_id)
    if will is not None:
        body += mqtt_string(will[0]) + len(will[1]).to_bytes(2, "big") + will[1]
    assert len(body) < 128
    return bytes([0x10, len(body)]) + body


CONNECT = connect_packet("probe")


def connack(pki: Pki, context: ssl.SSLContext | None) -> bytes:
    """Send CONNECT (over TLS as the two ends agree, 1.3 here; or plain TCP with None).

    Return the broker's first 4 bytes: a CONNACK, or b"" when it closes the connection.
    """
    with socket.create_connection(("127.0.0.1", pki.broker.port), timeout=10) as raw:
        try:
            link = raw if context is None else context.wrap_socket(raw, server_hostname="127.0.0.1")
            with link:
                link.sendall(CONNECT)
                return link.recv(4)
        except (ssl.SSLError, ConnectionResetError):  # closed, with or without an alert
            return b""


def no_certificate(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=pki.ca_file)


def another_ca(pki: Pki) -> ssl.SSLContext:
    """Gateway A's very name, signed by a CA of someone else's."""
    now = datetime.now(UTC)
    stranger = create_ca("Ganzhi province CA", validity_from(now, 10))
    folder = pki.work / "stranger"
    write_issued(
        folder,
        GATEWAY_A,
        issue_client(stranger, GATEWAY_A, validity_from(now, 10)),
        stranger.certificate,
    )
    return pki.context(GATEWAY_A, folder)


def province_issued(pki: Pki, folder: str, validity: Validity) -> ssl.SSLContext:
    """Gateway A's name from the province CA, with `validity`, kept in `folder`."""
    ca = load_ca(pki.ca_dir)
    issued = issue_client(ca, GATEWAY_A, validity)
    write_issued(pki.work / folder, GATEWAY_A, issued, ca.certificate)
    return pki.context(GATEWAY_A, pki.work / folder)


def expired(pki: Pki) -> ssl.SSLContext:
    """Valid from 10 days ago until yesterday."""
    now = datetime.now(UTC)
    return province_issued(pki, "expired", Validity(now - timedelta(days=10), now - timedelta(1)))


def not_yet_valid(pki: Pki) -> ssl.SSLContext:
    """Valid from tomorrow on."""
    now = datetime.now(UTC)
    return province_issued(pki, "future", Validity(now + timedelta(days=1), now + timedelta(10)))


@pytest.mark.parametrize(
    ("make_context", "alert"),
    [
        (no_certificate, "SSLV3_ALERT_HANDSHAKE_FAILURE"),
        (another_ca, "TLSV1_ALERT_UNKNOWN_CA"),
        (expired, "SSLV3_ALERT_CERTIFICATE_EXPIRED"),
        (not_yet_valid, "SSLV3_ALERT_BAD_CERTIFICATE"),
    ],
    ids=["no-certificate", "another-ca", "expired", "not-yet-valid"],
)
def test_the_broker_refuses_clients_without_a_valid_certificate(
    pki: Pki, make_context: Callable[[Pki], ssl.SSLContext], alert: str
) -> None:
    assert probe(pki, make_context(pki)) == alert
    assert connack(pki, make_context(pki)) == b""
    # The same probes let a valid certificate in: the refusals above are about the certificate.
    assert probe(pki, pki.context(GATEWAY_A)) == ""
    assert connack(pki, pki.context(GATEWAY_A)) == CONNACK_ACCEPTED


def test_plain_mqtt_is_refused_on_the_tls_listener(pki: Pki) -> None:
    assert connack(pki, None) == b""
    assert connack(pki, pki.context(GATEWAY_A)) == CONNACK_ACCEPTED


async def test_a_gateway_cannot_leave_a_last_will_on_another_gateways_status(pki: Pki) -> None:
    """A will is checked when Mosquitto publishes it: one under another's status is dropped."""

    def drop_with_will(client_id: str, topic: str) -> None:
        raw = socket.create_connection(("127.0.0.1", pki.broker.port), timeout=10)
        link = pki.context(GATEWAY_A).wrap_socket(raw, server_hostname="127.0.0.1")
        link.sendall(connect_packet(client_id, (topic, b'{"online": false}')))
        assert link.recv(4) == CONNACK_ACCEPTED
        # No DISCONNECT: the connection is lost, so the broker publishes the will.
        link.shutdown(socket.SHUT_RDWR)
        link.close()

    async with connect(pki, pki.collector_context(), "collector-1") as collector:
        await collector.subscribe(f"{ROOT}/+/+/+/status", qos=1)
        await asyncio.to_thread(drop_with_will, "a-forging", B.status)
        # Connecting again takes the broker through its loop, past the first loss.
        await asyncio.to_thread(drop_with_will, "a-own", A.status)
        seen = await received_until(collector, A.status)
    assert seen == [(A.status, b'{"online": false}')]


@pytest.mark.parametrize(
    ("option", "revoked", "others"),
    [
        ("--gateway", GATEWAY_A, (GATEWAY_B, COLLECTORS[0])),
        # A collector host's certificate reads every gateway's data: a stolen one must be
        # revocable too, not only replaceable once it expires.
        ("--collector", COLLECTORS[1], (COLLECTORS[0], GATEWAY_A)),
    ],
    ids=["gateway", "collector"],
)
def test_a_revoked_certificate_is_refused_once_the_broker_rereads_its_list(
    pki: Pki, option: str, revoked: str, others: tuple[str, ...]
) -> None:
    def context(name: str) -> ssl.SSLContext:
        return pki.collector_context(name) if name in COLLECTORS else pki.context(name)

    assert probe(pki, context(revoked)) == ""
    cli(
        "certs", "revoke", "-c", str(pki.config), option, revoked,
        "--broker-dir", str(pki.broker.workdir),
    )  # fmt: skip
    assert pki.broker.process is not None
    pki.broker.process.send_signal(signal.SIGHUP)  # Mosquitto 2.0 rereads certificates and CRL
    wait_until(
        lambda: probe(pki, context(revoked)) == "SSLV3_ALERT_CERTIFICATE_REVOKED",
        10,
        "the broker to refuse the revoked certificate",
    )
    assert connack(pki, context(revoked)) == b""
    # The other certificates from the same CA are not affected.
    for other in others:
        assert connack(pki, context(other)) == CONNACK_ACCEPTED, other


async def test_a_gateway_cannot_take_another_clients_id(pki: Pki) -> None:
    """The broker names every client after its certificate: a borrowed client id is ignored.

    Without that, connecting under another's client id disconnects it ("already connected,
    closing old connection") and takes over its session.
    """
    async with (
        connect(pki, pki.collector_context(), COLLECTORS[0]) as collector,
        connect(pki, pki.context(GATEWAY_B), GATEWAY_B) as gateway_b,
    ):
        await collector.subscribe(f"{ROOT}/+/+/+/status", qos=1)
        for borrowed in (GATEWAY_B, COLLECTORS[0]):
            async with connect(pki, pki.context(GATEWAY_A), borrowed) as gateway_a:
                pubacks = PubackReasons(gateway_a)
                # It acts as itself, under its own name's rights.
                assert await pubacks.publish(gateway_a, B.status, b"forged") == NOT_AUTHORIZED
            # Both it borrowed from are still connected: B publishes, the collector receives.
            async with asyncio.timeout(DELIVERY_TIMEOUT):
                await gateway_b.publish(B.status, borrowed.encode(), qos=1)
            assert await received_until(collector, B.status) == [(B.status, borrowed.encode())]
    log = (pki.broker.workdir / "mosquitto.log").read_text(encoding="utf-8", errors="replace")
    assert "already connected" not in log


async def test_the_broker_drops_a_message_over_the_collectors_limit(pki: Pki) -> None:
    """`max_packet_size` from the collector's `ingest.max_message_bytes` (the default here).

    Before, the broker took a message as large as MQTT allows (256 MiB) on a gateway's own
    topics and handed it to the collectors. A message at the limit, with a block's user
    properties beside it, still goes through; a packet past the headroom left for them, and
    the broker closes the sender's connection, and no collector is handed it. (One in
    between is audited `too_large` by the collector: tests/security/test_mqtt_message_size.)
    """
    limit = IngestConfig().max_message_bytes
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.UserProperty = [(name, "s" * 200) for name in ("alg", "kid", "sig", "enc", "lane")]
    async with (
        connect(pki, pki.collector_context(), COLLECTORS[0]) as collector,
        connect(pki, pki.context(GATEWAY_B), GATEWAY_B) as gateway_b,
    ):
        await collector.subscribe(collector_subscription("gz-collectors"), qos=1)
        await collector.subscribe(f"{ROOT}/+/+/+/status", qos=1)
        async with connect(pki, pki.context(GATEWAY_A), GATEWAY_A) as gateway_a:
            await gateway_a.publish(A.block, bytes(limit), qos=1, properties=properties)
        for topic in (A.block, A.status):
            with pytest.raises(aiomqtt.MqttError):  # no PUBACK: the connection is closed
                async with aiomqtt.Client(
                    "127.0.0.1",
                    pki.broker.port,
                    identifier=GATEWAY_A,
                    tls_context=pki.context(GATEWAY_A),
                    protocol=aiomqtt.ProtocolVersion.V5,
                    timeout=1.0,
                ) as gateway_a:
                    await gateway_a.publish(topic, bytes(limit + PACKET_HEADROOM), qos=1)
        await gateway_b.publish(B.block, b"control", qos=1)
        received = await received_until(collector, B.block)
    assert [(topic, len(payload)) for topic, payload in received] == [
        (A.block, limit),
        (B.block, len(b"control")),
    ]
    log = (pki.broker.workdir / "mosquitto.log").read_text(encoding="utf-8", errors="replace")
    assert log.count(f"Client {GATEWAY_A} disconnected due to oversize packet.") == 2


async def test_a_gateway_writes_its_exact_topics_only_and_leaves_nothing_retained_elsewhere(
    pki: Pki,
) -> None:
    """The ACL let a gateway write `up/#`: any topic under its `up/`, at any depth.

    A retained message there (a status under a level made up, say) was kept by the broker for
    good, persisted across restarts, and handed to every client that subscribed later; one
    topic a level, as many as the gateway cared to invent. Now a gateway writes `up/block`,
    `up/meta`, `up/cmd` and `status`, each exactly, and a collector `down/ack` and
    `down/cmd`.
    """
    made_up = (
        f"{A.base}/up/status",
        f"{A.base}/up/block/extra",
        f"{A.base}/up/x/y/z",
        f"{A.base}/up/",
    )
    async with (
        connect(pki, pki.context(GATEWAY_A), "gateway-a") as gateway_a,
        connect(pki, pki.collector_context(), "collector-1") as collector,
    ):
        pubacks = PubackReasons(gateway_a)
        for topic in made_up:
            await gateway_a.publish(topic, b"kept for ever", qos=1, retain=True)
            assert pubacks.codes[-1] == NOT_AUTHORIZED, topic
        for topic in (A.meta, A.cmd_result, A.status):  # taken (0x10: nobody subscribed)
            assert await pubacks.publish(gateway_a, topic, b"own") < NOT_AUTHORIZED, topic
        collector_pubacks = PubackReasons(collector)
        for topic in (f"{A.base}/down/x", f"{A.ack}/extra", f"{A.base}/down/ack/y/z"):
            await collector.publish(topic, b"kept for ever", qos=1, retain=True)
            assert collector_pubacks.codes[-1] == NOT_AUTHORIZED, topic
        for topic in (A.ack, A.cmd):
            assert await collector_pubacks.publish(collector, topic, b"own") < NOT_AUTHORIZED, topic
        # What a client subscribing now is handed of what was retained: nothing before the
        # control (the collector's identity reads every gateway's up/ and status).
        await collector.subscribe(f"{ROOT}/#", qos=1)
        assert await pubacks.publish(gateway_a, A.block, b"control") == 0
        received = await received_until(collector, A.block)
    assert received == [(A.block, b"control")]
