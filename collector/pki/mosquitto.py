"""The Mosquitto config of the broker isolation (DESIGN section 11): TLS listener and ACL.

Pure: paths and names in, file texts out. What the texts make Mosquitto 2.0 do:

- `require_certificate` refuses, during the TLS handshake, a client without a certificate
  of the province CA, or with an expired or revoked one (`crlfile`);
  `use_identity_as_username` makes the certificate's common name the client's username,
  which no client can choose otherwise (no password file, `allow_anonymous false`).
- The ACL's `pattern` lines name that username as `%u`: a gateway publishes only on its own
  `up/block`, `up/meta`, `up/cmd` and `status` topics, each exactly (no level added below
  them, where a retained message would stay for good), and receives only its own `down/`
  topics. One file serves
  every gateway, present and future, so issuing a certificate is all adding a gateway takes.
- Mosquitto 2.0 grants every SUBSCRIBE and checks read access per message as it delivers
  it: a gateway subscribed to another's `down/#` is sent nothing. A PUBLISH it may not make
  is dropped (MQTT 5: PUBACK reason 0x87 Not authorized).
- `use_username_as_clientid` makes that name the client id as well: a client cannot take
  another's client id, which would disconnect that client ("already connected, closing old
  connection") and take over its session. So every collector process has an identity of its
  own (`gz-collector`, `gz-collector-2`, ...), each a `user` section of the ACL.
- `max_packet_size` is the collectors' `ingest.max_message_bytes` and room for a topic and
  properties (PACKET_HEADROOM): a client that sends a larger packet is disconnected and its
  message dropped, before any collector is handed it. No agent sends one (specs.block,
  MAX_BLOCK_READINGS).
- Each collector identity reads every gateway's `up/#` (through the shared subscription:
  the check is on each message's topic, not on `$share/...`) and `status`, and writes
  `down/ack` and `down/cmd`; the `pattern` lines give it nothing, since no gateway is called
  that.
- The district and enterprise levels stay `+`: the certificate names the gateway only. A
  gateway may publish, and leave retained, under made-up ones with its own id (the collector
  refuses what arrives there: `topic_mismatch`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from specs.topics import ROOT

CONF: Final = "mosquitto.conf"
ACL: Final = "mosquitto.acl"
BROKER: Final = "broker"
"""Stem of the broker's certificate and key files."""
DATA: Final = "data"
"""Where the broker keeps its sessions across restarts (owned by the user it runs as)."""
QUEUED_BYTES_PER_CLIENT: Final = 256 * 1024 * 1024
"""Bytes of messages queued per client that is away (a collector restarting, a gateway offline).

The cap that binds. Mosquitto's default of 1000 messages silently drops the newest past it,
which a collector down for a minute under a province's load reaches. Past this cap the agents
resend on their ACK timeout, so it bounds memory, not data.
"""
QUEUED_MESSAGES_PER_CLIENT: Final = 1_000_000
"""A count the bytes cap reaches first. Not 0 ("no limit"): Mosquitto 2.0.11 with
`max_queued_messages 0` drops the connection of a client whose QoS 1 PUBLISH the ACL denies,
instead of answering PUBACK 0x87 (seen writing tests/security/test_broker_isolation.py).
"""


PACKET_HEADROOM: Final = 64 * 1024
"""Bytes of a PUBLISH beside its payload that `max_packet_size` leaves room for: the fixed
header, a topic (~100 bytes for gz/1) and the user properties (signature, kid, alg, enc, lane)."""


GATEWAY_WRITES: Final = ("up/block", "up/meta", "up/cmd", "status")
"""The topics under its own id a gateway may publish on (specs.topics.GatewayTopics)."""
COLLECTOR_WRITES: Final = ("down/ack", "down/cmd")
"""The topics under any gateway's id a collector identity may publish on."""


@dataclass(frozen=True, slots=True)
class BrokerLayout:
    """The files of one broker config, all in `folder` (absolute, so it runs from anywhere)."""

    folder: Path

    @property
    def conf(self) -> Path:
        """`mosquitto -c` this."""
        return self.folder / CONF

    @property
    def acl(self) -> Path:
        """The ACL file the config names."""
        return self.folder / ACL

    @property
    def ca(self) -> Path:
        """The province CA certificate: clients are checked against it."""
        return self.folder / "ca.crt"

    @property
    def crl(self) -> Path:
        """The CA's revocation list (`collector certs revoke`)."""
        return self.folder / "ca.crl"

    @property
    def cert(self) -> Path:
        """The broker's server certificate."""
        return self.folder / f"{BROKER}.crt"

    @property
    def key(self) -> Path:
        """The broker's private key."""
        return self.folder / f"{BROKER}.key"

    @property
    def data(self) -> Path:
        """The persistence folder."""
        return self.folder / DATA


def _topics(access: str, gateway: str, kinds: Sequence[str]) -> str:
    """One ACL line per topic kind, each exact: no level more, none made up."""
    return "".join(f"{access} {ROOT}/+/+/{gateway}/{kind}\n" for kind in kinds)


def acl_text(collectors: Sequence[str]) -> str:
    """The ACL: each gateway its own topics, each collector identity every gateway's.

    What is written is named topic by topic (GATEWAY_WRITES, COLLECTOR_WRITES): a `#` there
    let a client publish under levels it made up, and a retained message there stays with
    the broker for good. Reads may keep `#`: they give nothing that cannot be written.
    """
    sections = "\n".join(
        f"user {name}\n"
        f"topic read {ROOT}/+/+/+/up/#\n"
        f"topic read {ROOT}/+/+/+/status\n" + _topics("topic write", "+", COLLECTOR_WRITES)
        for name in collectors
    )
    return (
        "# Written by `collector broker-config` (DESIGN section 11). %u is the common name of\n"
        "# the client certificate: the gateway id for a gateway.\n"
        + _topics("pattern write", "%u", GATEWAY_WRITES)
        + f"pattern read {ROOT}/+/+/%u/down/#\n"
        "\n"
        "# The collectors, one identity per process (they share the subscription"
        f" $share/<group>/{ROOT}/+/+/+/up/#).\n"
        f"{sections}"
    )


def mosquitto_conf(
    layout: BrokerLayout, host: str, port: int, run_as: str, *, max_message_bytes: int
) -> str:
    """The broker config: one TLS listener on `host:port` that requires a client certificate.

    A packet over `max_message_bytes` and PACKET_HEADROOM closes its sender's connection.
    """
    return (
        "# Written by `collector broker-config` (DESIGN section 11). Run: mosquitto -c"
        f" {layout.conf}\n"
        "# Every client shows a certificate of the province CA; its common name is its username\n"
        f"# and {ACL} says what that name may publish and receive.\n"
        f"user {run_as}\n"
        "per_listener_settings false\n"
        "allow_anonymous false\n"
        f"acl_file {layout.acl}\n"
        "\n"
        "# Sessions (the collectors' durable ones included) and retained status survive a\n"
        "# restart; what a client that is away may have queued is bounded in bytes, not in\n"
        "# messages (past it the agents resend: only the collector's ACK lets them forget).\n"
        "persistence true\n"
        f"persistence_location {layout.data}/\n"
        f"max_queued_messages {QUEUED_MESSAGES_PER_CLIENT}\n"
        f"max_queued_bytes {QUEUED_BYTES_PER_CLIENT}\n"
        "# The collectors' ingest.max_message_bytes, and room for a topic and properties: a\n"
        "# client sending a larger packet is disconnected, its message dropped.\n"
        f"max_packet_size {max_message_bytes + PACKET_HEADROOM}\n"
        "\n"
        "connection_messages true\n"
        "log_type error\n"
        "log_type warning\n"
        "log_type notice\n"
        "\n"
        f"listener {port} {host}\n"
        f"cafile {layout.ca}\n"
        f"crlfile {layout.crl}\n"
        f"certfile {layout.cert}\n"
        f"keyfile {layout.key}\n"
        "require_certificate true\n"
        "use_identity_as_username true\n"
        "use_username_as_clientid true\n"
    )
