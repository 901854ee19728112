"""The agent's uplink `Publisher` on a real outbox, as the publisher tests and the attacks on
the agent build it: one fixed gateway (SITE, its keys and topics) and a trusted collector key.

The keys come from fixed seeds, so a test can sign as the collector (COLLECTOR_KEY) or forge
with another key and know which the publisher trusts.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Final

from edge_agent.core.chain import Identity
from edge_agent.shell.host import clock_synchronized
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.publisher import CommandInbox, Publisher
from edge_agent.shell.publisher_acks import AckTaker
from edge_agent.shell.publisher_lanes import Lanes
from edge_agent.shell.uplink import UplinkSettings
from hostkit.backoff import ResendBackoff
from hostkit.log_limit import LineLimit
from specs.signing import signing_key_from_seed
from specs.topics import GatewayTopics

GATEWAY_KEY: Final = signing_key_from_seed(b"g" * 32)
COLLECTOR_KEY: Final = signing_key_from_seed(b"c" * 32)
SITE: Final = Identity("91360100MA35GW001H-GW01", "91360100MA35GW001H", "360100", "WHP")
TOPICS: Final = GatewayTopics(SITE.district, SITE.enterprise, SITE.gateway)


def gateway_publisher(
    outbox: Outbox,
    broker_port: int,
    *,
    ack_timeout: float,
    max_inflight: int,
    reconnect_after: float = 0.2,
    meta: bytes | None = None,
    commands: CommandInbox | None = None,
    rejected_lines: LineLimit | None = None,
    clock_synced: Callable[[], bool] = clock_synchronized,
    clock: Callable[[], float] = time.time,
) -> Publisher:
    """SITE's publisher of `outbox` to the broker on loopback `broker_port` (keepalive 30 s,
    heartbeat 60 s), reconnecting every `reconnect_after` s; `meta`, when given, is sent
    signed on each connect; `commands` takes down/cmd, `rejected_lines` bounds `ack_rejected`;
    `clock_synced` says whether the agent's clock is synchronized (the host's, unless given),
    `clock` is that clock where it bounds ACK times (the host's, unless given)."""
    settings = UplinkSettings(
        "127.0.0.1", broker_port, SITE.gateway, 30, 60, ack_timeout, max_inflight
    )
    return Publisher(
        outbox,
        TOPICS,
        COLLECTOR_KEY.public(),
        settings,
        lambda: itertools.repeat(reconnect_after),
        sign=GATEWAY_KEY.sign,
        meta=None if meta is None else (meta, GATEWAY_KEY.sign(meta)),
        commands=commands,
        rejected_lines=rejected_lines,
        clock_synced=clock_synced,
        clock=clock,
    )


def ack_taker(
    outbox: Outbox, *, lanes: Lanes | None = None, wake: asyncio.Event | None = None
) -> AckTaker:
    """The ACK handler of `outbox` as the publisher makes it, on `lanes` and `wake` (its own
    when not given)."""
    return AckTaker(
        outbox,
        TOPICS,
        COLLECTOR_KEY.public(),
        lanes=Lanes(4, ResendBackoff(1.0)) if lanes is None else lanes,
        wake=asyncio.Event() if wake is None else wake,
        rejected_lines=LineLimit(),
    )
