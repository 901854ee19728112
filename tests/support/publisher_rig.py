"""The agent's uplink `Publisher` on a real outbox, as the publisher tests and the attacks on
the agent build it: one fixed gateway (SITE, its keys and topics) and a trusted collector key.

The keys come from fixed seeds, so a test can sign as the collector (COLLECTOR_KEY) or forge
with another key and know which the publisher trusts. The ACK tests hand the collector's
signed ACKs straight to the publisher's `AckTaker` (`ack_stored_through`,
`ack_beyond_the_chain`), without a broker between.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Final

import pytest

from edge_agent.core.chain import Identity
from edge_agent.shell import outbox_open
from edge_agent.shell.host import clock_synchronized
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.publisher import CommandInbox, Publisher
from edge_agent.shell.publisher_acks import AckTaker
from edge_agent.shell.publisher_lanes import Lanes
from edge_agent.shell.uplink import UplinkSettings
from hostkit.backoff import ResendBackoff
from hostkit.log_limit import LineLimit
from specs.ack import Ack
from specs.records import Quality, Reading, iso_time
from specs.signing import signature_properties, signing_key_from_seed
from specs.topics import GatewayTopics
from tests.support.collector_client import publish_properties

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


async def seal_now(outbox: Outbox, value: float) -> None:
    """Seal one reading of `value` (tank 1's level), stamped with the host's clock now."""
    reading = Reading("T001-LT-01", "WHP-LT", iso_time(time.time()), value, "m", Quality.GOOD)
    await outbox.seal((reading,), now=time.time(), clock_synced=True)


@contextlib.asynccontextmanager
async def three_blocks(path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Outbox]:
    """The outbox at `path` holding seqs 1..3 undelivered, its epoch lock's wait given up at
    once instead of after 120 s (the wait's length is not what is shown)."""
    monkeypatch.setattr(outbox_open, "OUTBOX_EPOCH_LOCK_TIMEOUT", 0.0)
    async with open_outbox(path, SITE, GATEWAY_KEY) as outbox:
        for _ in range(3):
            await seal_now(outbox, 1.0)
        yield outbox


def rollback_proven(epoch: str) -> bytes:
    """The collector's ACK through seq 8 of a file holding 1..3: a rollback proven."""
    return Ack(SITE.gateway, epoch, 8, (), 3, iso_time(time.time())).encode()


async def ack_beyond_the_chain(acks: AckTaker, epoch: str) -> None:
    """Hand `acks` that ACK (`rollback_proven`), signed by the collector."""
    payload = rollback_proven(epoch)
    await acks.on_ack(
        payload, publish_properties(signature_properties(COLLECTOR_KEY.sign(payload)))
    )


async def ack_stored_through(acks: AckTaker, epoch: str, seq: int, hash_: str | None) -> None:
    """Hand `acks` the collector's signed ACK of `epoch` through `seq`, whose hash is `hash_`."""
    payload = Ack(
        SITE.gateway, epoch, seq, (), seq, iso_time(time.time()), acked_hash=hash_
    ).encode()
    await acks.on_ack(
        payload, publish_properties(signature_properties(COLLECTOR_KEY.sign(payload)))
    )
