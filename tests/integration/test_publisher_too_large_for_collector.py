"""A block larger than the collector takes, through a broker that says no maximum.

A broker that sets no packet limit (Mosquitto's default) says none in its CONNACK, so the agent
sent any block; the collector audits a payload over its `ingest.max_message_bytes` `too_large`
unread and answers nothing, so the agent sent it again at each `uplink.ack_timeout`, for ever,
and only the collector's audit said why. Now each ACK says the collector's limit
(`max_message_bytes`) and the agent splits a block over it as it does one over the broker's
(`edge_agent.shell.outbox_oversize`). Real Mosquitto (no `max_packet_size`), the collector's
real ingest (SQLite and PostgreSQL) set to 16 KiB, the agent's real outbox and publisher.

The contract's least limit (specs.ack.MIN_MESSAGE_BYTES, 4 MiB) is above any block an agent
seals (MAX_BLOCK_READINGS), so the split is shown with the agent's least lowered to the 16 KiB
this collector says; with the least as shipped, the same 16 KiB is ignored, never split for.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from specs.ack import MIN_MESSAGE_BYTES
from specs.records import GapReason
from specs.signing import generate_signing_key
from tests.support.agent_rig import AgentRig, running_agent
from tests.support.broker import Broker
from tests.support.collector_client import sim_gateway
from tests.support.collector_env import register, running_ingest
from tests.support.postgres import sql_rows

pytestmark = pytest.mark.timeout(90)

LIMIT = 16 * 1024  # the collector's ingest.max_message_bytes here (its config takes 4 MiB+)
# What the collector audits too_large (aggregated: a row per (gateway, reason, minute)).
REFUSED = "SELECT coalesce(sum(count), 0) FROM audit WHERE gateway = ? AND reason = 'too_large'"
GW = sim_gateway(61)
BIG = tuple(GW.reading(1000, i) for i in range(400))  # ~60 KB as one block


async def _within(seconds: float, done: Callable[[], Awaitable[bool]]) -> bool:
    """Whether `done` comes true within `seconds` (polled every 50 ms)."""
    deadline = time.monotonic() + seconds
    while not await done():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@contextlib.asynccontextmanager
async def _running(
    folder: Path, broker: Broker, storage_url: str, *, least: int | None
) -> AsyncIterator[AgentRig]:
    """The collector's ingest at LIMIT and the gateway's agent (its least collector limit
    `least`; None: as shipped), the gateway registered; ACKs awaited for 1 s."""
    collector_key = generate_signing_key()
    async with (
        running_ingest(broker.port, storage_url, collector_key, max_message_bytes=LIMIT) as (
            _,
            storage,
        ),
        running_agent(
            folder,
            broker.port,
            GW,
            collector_key.public(),
            ack_timeout=1.0,
            least_collector_limit=least,
        ) as agent,
    ):
        await register(storage, GW)
        yield agent


async def _count(url: str, query: str) -> int:
    [(count,)] = await sql_rows(url, query, GW.gateway)
    return int(count)


@pytest.mark.parametrize("heard_first", [False, True], ids=["big-first", "acked-first"])
async def test_a_block_larger_than_the_collector_takes_is_split_and_every_reading_stored(
    tmp_path: Path, broker: Broker, storage_url: str, heard_first: bool
) -> None:
    with capture_logs() as logs:
        # The agent's least lowered to LIMIT: a stand-in for a collector at the least.
        async with _running(tmp_path, broker, storage_url, least=LIMIT) as agent:
            if heard_first:  # an ACK has said the collector's limit before the block goes
                await agent.seal(1)
                assert await _within(10, lambda: _none_undelivered(agent))
            await agent.seal(records=BIG)
            await agent.seal(3)

            delivered = await _within(20, lambda: _none_undelivered(agent))
            refused = await _count(storage_url, REFUSED)
            assert delivered, (
                f"undelivered {await agent.undelivered()}, audited too_large {refused}"
            )
            stored = await _count(storage_url, "SELECT count(*) FROM readings WHERE gateway = ?")
            gaps = await sql_rows(
                storage_url,
                "SELECT reason, lost, from_seq, to_seq FROM gaps"
                " WHERE gateway = ? AND kind = 'record'",
                GW.gateway,
            )
    small = 4 if heard_first else 3
    assert stored == len(BIG) + small  # every reading, once
    big_seq = 2 if heard_first else 1
    assert gaps == [(GapReason.TOO_LARGE.value, 0, big_seq, big_seq)]
    # Sent once at most: before the first ACK said the limit (none when one had said it).
    assert refused == (0 if heard_first else 1)
    splits = [entry for entry in logs if entry["event"] == "block_too_large_for_collector"]
    assert [(s["seq"], s["limit"], s["bytes"] > LIMIT) for s in splits][:1] == [
        (big_seq, LIMIT, True)
    ]


async def test_a_limit_below_the_contracts_least_splits_nothing(
    tmp_path: Path, broker: Broker, storage_url: str
) -> None:
    """A collector saying less than the least (here 16 KiB, as a third-party or misconfigured
    one may): split for it, blocks would shrink to one record each, none of which is sent."""
    with capture_logs() as logs:
        async with _running(tmp_path, broker, storage_url, least=None) as agent:
            await agent.seal(1)  # its ACK says 16 KiB
            assert await _within(10, lambda: _none_undelivered(agent))
            await agent.seal(records=BIG)
            await agent.seal(3)

            async def settled() -> bool:  # the small ones stored, the big one refused
                return await agent.undelivered() == [2] and await _count(storage_url, REFUSED) > 0

            assert await _within(20, settled), await agent.undelivered()
            stored = await _count(storage_url, "SELECT count(*) FROM readings WHERE gateway = ?")
            declared = await sql_rows(
                storage_url,
                "SELECT reason FROM gaps WHERE gateway = ? AND kind = 'record'",
                GW.gateway,
            )
    assert (stored, declared) == (4, [])  # the big block neither split nor declared
    events = [entry["event"] for entry in logs]
    assert "block_too_large_for_collector" not in events
    ignored = [e for e in logs if e["event"] == "collector_limit_below_least"]
    assert [(e["limit"], e["least"]) for e in ignored] == [(LIMIT, MIN_MESSAGE_BYTES)]


async def _none_undelivered(agent: AgentRig) -> bool:
    return await agent.undelivered() == []
