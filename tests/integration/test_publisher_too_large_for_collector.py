"""A block larger than the collector takes, through a broker that says no maximum.

A broker that sets no packet limit (Mosquitto's default) says none in its CONNACK, so the agent
sent any block; the collector audits a payload over its `ingest.max_message_bytes` `too_large`
unread and answers nothing, so the agent sent it again at each `uplink.ack_timeout`, for ever,
and only the collector's audit said why. Now each ACK says the collector's limit
(`max_message_bytes`) and the agent splits a block over it as it does one over the broker's
(`edge_agent.shell.outbox_oversize`). Real Mosquitto (no `max_packet_size`), the collector's
real ingest (SQLite and PostgreSQL) set to 16 KiB, the agent's real outbox and publisher.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from specs.records import GapReason
from specs.signing import generate_signing_key
from tests.support.agent_rig import AgentRig, running_agent
from tests.support.broker import Broker
from tests.support.collector_client import sim_gateway
from tests.support.collector_env import register, running_ingest
from tests.support.postgres import sql_rows

pytestmark = pytest.mark.timeout(90)

LIMIT = 16 * 1024  # the collector's ingest.max_message_bytes here (its config takes 4 MiB+)
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


async def _count(url: str, query: str) -> int:
    [(count,)] = await sql_rows(url, query, GW.gateway)
    return int(count)


@pytest.mark.parametrize("heard_first", [False, True], ids=["big-first", "acked-first"])
async def test_a_block_larger_than_the_collector_takes_is_split_and_every_reading_stored(
    tmp_path: Path, broker: Broker, storage_url: str, heard_first: bool
) -> None:
    collector_key = generate_signing_key()
    with capture_logs() as logs:
        async with (
            running_ingest(broker.port, storage_url, collector_key, max_message_bytes=LIMIT) as (
                _,
                storage,
            ),
            running_agent(tmp_path, broker.port, GW, collector_key.public(), ack_timeout=1.0) as (
                agent
            ),
        ):
            await register(storage, GW)
            if heard_first:  # an ACK has said the collector's limit before the block goes
                await agent.seal(1)
                assert await _within(10, lambda: _none_undelivered(agent))
            await agent.seal(records=BIG)
            await agent.seal(3)

            delivered = await _within(20, lambda: _none_undelivered(agent))
            refused = await _count(
                storage_url,
                # Aggregated: a row per (gateway, reason, minute), its `count` the refusals.
                "SELECT coalesce(sum(count), 0) FROM audit"
                " WHERE gateway = ? AND reason = 'too_large'",
            )
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


async def _none_undelivered(agent: AgentRig) -> bool:
    return await agent.undelivered() == []
