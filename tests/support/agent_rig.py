"""A real agent's outbox and publisher for one simulated gateway, against a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from edge_agent.core.chain import Identity
from edge_agent.core.trusted_keys import TrustedKeys
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.publisher import Publisher
from edge_agent.shell.uplink import UplinkSettings
from simulators.lifecycle import cancel_task
from specs.encoding import Encoding
from specs.records import Record
from specs.signing import SigningKey, VerifyKey
from tests.support.collector_client import SimGateway


@dataclass
class AgentRig:
    """The agent's side: seal readings, see what is still undelivered."""

    gateway: SimGateway
    outbox: Outbox
    publisher: Publisher
    sealed: int = 0

    async def seal(self, count: int = 1, records: tuple[Record, ...] | None = None) -> None:
        """Seal `count` blocks of one reading each (or of `records`) and hand them over."""
        for _ in range(count):
            self.sealed += 1
            chosen = records if records is not None else (self.gateway.reading(self.sealed),)
            block = await self.outbox.seal(chosen, now=time.time(), clock_synced=True)
            self.publisher.notify_sealed(block.seq)

    async def undelivered(self) -> list[int]:
        """Seqs of the current epoch not yet released by an ACK."""
        return [b.seq for b in await self.outbox.delivery.undelivered(after=0, limit=10_000)]


def identity_of(gateway: SimGateway) -> Identity:
    """What the agent of `gateway` puts on its blocks."""
    return Identity(
        gateway.gateway, gateway.enterprise, gateway.district, gateway.domain, gateway.mine_code
    )


@contextlib.asynccontextmanager
async def running_agent(
    folder: Path,
    port: int,
    gateway: SimGateway,
    collector_keys: TrustedKeys | VerifyKey,
    *,
    key: SigningKey | None = None,
    ack_timeout: float = 2.0,
    encoding: Encoding | None = None,
    least_collector_limit: int | None = None,
) -> AsyncIterator[AgentRig]:
    """An outbox in `folder` and a publisher connected to the broker on `port`.

    The publisher sends blocks in `encoding` (specs.encoding; None: as sealed). With
    `least_collector_limit` it takes a collector limit (an ACK's `max_message_bytes`) down to
    that, below the contract's least (specs.ack.MIN_MESSAGE_BYTES), which no block it seals
    reaches: a test's collector set lower stands for one at the least.
    """
    signer = key or gateway.key
    async with open_outbox(folder / "outbox.db", identity_of(gateway), signer) as outbox:
        settings = UplinkSettings(
            "127.0.0.1",
            port,
            gateway.gateway,
            30,
            60,
            ack_timeout,
            max_inflight=16,
            encoding=encoding,
        )
        publisher = Publisher(
            outbox,
            gateway.topics,
            collector_keys,
            settings,
            lambda: iter([0.2] * 10_000),
            sign=signer.sign,
        )
        if least_collector_limit is not None:
            publisher._acks.least_limit = least_collector_limit
        task = asyncio.create_task(publisher.run(), name="test-agent-publisher")
        try:
            await asyncio.wait_for(publisher.connected.wait(), 10)
            yield AgentRig(gateway, outbox, publisher)
        finally:
            publisher.stop()
            await cancel_task(task)
