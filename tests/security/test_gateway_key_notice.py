"""A registered gateway whose blocks are refused for their key is told so; nobody else is.

The collector answers only the blocks it stores: one refused for its key (`revoked_key`,
`retired_key`, `unknown_key`) got no ACK, so an agent whose key an admin revoked while it was
idle saw nothing but a growing backlog and ACK timeouts, and `gateway_key_left_out` (raised by
an ACK's `keys`) never came. Now the collector sends such a gateway, when the registry knows
it, a signed ACK of that epoch carrying what it has stored already (`seq` null: it answers no
block, so it releases nothing new) and `keys`: at most one per gateway per
KEY_NOTICE_INTERVAL. A gateway id the registry does not know (or one published under another
place than its registered one) gets nothing: junk on made-up topics must not make the
collector publish signed messages anywhere.

Real Mosquitto, the collector's real ingest (SQLite and PostgreSQL), the agent's real outbox
and publisher; the key revoked with `collector gateways revoke`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from collector.model import Reason
from collector.storage.base import Storage
from edge_agent.core.agent_status import KeyStatus
from edge_agent.shell.rotation import key_status
from hostkit.keyfiles import write_key_pair
from specs.ack import decode_ack
from specs.signing import generate_signing_key
from specs.topics import GatewayTopics
from tests.support.agent_rig import AgentRig, running_agent
from tests.support.broker import Broker
from tests.support.collector_client import gateway_link, sim_gateway
from tests.support.collector_env import (
    cli_config,
    collector_cli,
    register,
    running_ingest,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)

GW = sim_gateway(57)
MADE_UP = sim_gateway(58)  # never registered


@contextlib.asynccontextmanager
async def heard_on(port: int, topic: str) -> AsyncIterator[list[tuple[str, bytes]]]:
    """Every (topic, payload) published on `topic` (a filter) while the block runs."""
    heard: list[tuple[str, bytes]] = []
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(topic, qos=1)

        async def pump() -> None:
            async for message in client.messages:
                heard.append((message.topic.value, bytes(message.payload)))  # noqa: PERF401 - read while it runs

        task = asyncio.create_task(pump(), name="heard-on")
        try:
            yield heard
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _refused(storage: Storage, gateway: str, reason: Reason) -> int:
    return sum(row.count for row in await storage.audit(gateway=gateway, reason=reason))


@dataclass
class Site:
    """A running collector and the agent of GW, and every ACK sent to GW."""

    storage: Storage
    agent: AgentRig
    acks: list[tuple[str, bytes]]
    key_file: Path

    async def left_out_shown(self) -> float:
        """Wait until `edge-agent status` shows the agent's key left out; since when."""
        status = await wait_until(
            lambda: key_status(self.agent.outbox, self.key_file, GW.key),
            lambda seen: seen.left_out is not None,
        )
        assert status.left_out is not None
        assert status == KeyStatus(GW.key.kid, left_out=status.left_out)
        return status.left_out


@contextlib.asynccontextmanager
async def running_site(tmp_path: Path, broker: Broker, storage_url: str) -> AsyncIterator[Site]:
    """The collector's ingest on `storage_url` and GW's agent, signing with GW's key."""
    key_file = tmp_path / "keys" / "gateway.key"
    write_key_pair(key_file, GW.key)
    collector_key = generate_signing_key()
    async with (
        running_ingest(broker.port, storage_url, collector_key) as (_, storage),
        running_agent(tmp_path / "agent", broker.port, GW, collector_key.public()) as agent,
        heard_on(broker.port, GW.topics.ack) as acks,
    ):
        yield Site(storage, agent, acks, key_file)


async def test_a_gateway_whose_key_is_revoked_while_idle_sees_it_left_out(
    tmp_path: Path, broker: Broker, storage_url: str
) -> None:
    (tmp_path / "collector").mkdir()
    config = cli_config(tmp_path / "collector", storage_url)
    async with running_site(tmp_path, broker, storage_url) as site:
        agent, storage, acks = site.agent, site.storage, site.acks
        await register(storage, GW)
        await agent.seal(2)
        await wait_until(agent.undelivered, lambda seqs: seqs == [])
        revoked = await asyncio.to_thread(
            collector_cli, "gateways", "revoke", "-c", str(config), "--gateway", GW.gateway
        )
        assert revoked.exit_code == 0, revoked.output
        await wait_until(lambda: _heard(acks), lambda n: n >= 2)  # the two ACKs of 1 and 2
        answered = len(acks)
        last_stored = agent.publisher.last_ack

        await agent.seal(3)  # idle until now: the first block after the revocation

        await site.left_out_shown()
        # All three refused (and sent again after the ACK timeout, refused again): one answer.
        await wait_until(lambda: _refused(storage, GW.gateway, Reason.REVOKED_KEY), lambda n: n > 3)
        [notice] = [decode_ack(payload) for _, payload in acks[answered:]]
        assert (notice.epoch, notice.acked_through, notice.seq) == (agent.outbox.epoch, 2, None)
        assert notice.keys == ()
        assert await agent.undelivered() == [3, 4, 5]  # nothing released
        # `edge-agent status`'s "last ACK" is the collector's last release: not the notice.
        assert agent.publisher.last_ack == last_stored


async def _heard(heard: list[tuple[str, bytes]]) -> int:
    return len(heard)


async def test_a_gateway_the_registry_does_not_know_gets_nothing_back(
    tmp_path: Path, broker: Broker, storage_url: str
) -> None:
    collector_key = generate_signing_key()
    stranger = generate_signing_key()
    async with (
        running_ingest(broker.port, storage_url, collector_key) as (_, storage),
        heard_on(broker.port, "gz/1/+/+/+/down/#") as sent,
        gateway_link(broker.port, MADE_UP) as link,
    ):
        await register(storage, GW)
        for seq in range(1, 6):
            await link.send(seq)  # signed by a key the collector never registered
            junk = b"not a block %d" % seq
            await link.publish(junk, MADE_UP.sign(junk, stranger))
        # The registered gateway's id under another place than its registered one.
        misplaced = GatewayTopics(GW.district, MADE_UP.enterprise, GW.gateway).block
        payload = GW.block(1, header={"enterprise": MADE_UP.enterprise})
        await link.publish(payload, GW.sign(payload, stranger), topic=misplaced)

        await wait_until(
            lambda: _refused(storage, MADE_UP.gateway, Reason.UNKNOWN_KEY), lambda n: n >= 10
        )
        await wait_until(
            lambda: _refused(storage, GW.gateway, Reason.UNKNOWN_KEY), lambda n: n >= 1
        )
        # A block the collector stores afterwards is answered: the one message it sent, and
        # after what it would have sent for the refusals (one connection keeps the order).
        async with gateway_link(broker.port, GW) as known:
            await known.send(1)
            await known.next_ack()
        await wait_until(lambda: _heard(sent), lambda n: n >= 1)
        assert [topic for topic, _ in sent] == [GW.topics.ack]


async def test_a_gateway_signing_with_a_key_never_registered_sees_it_left_out(
    tmp_path: Path, broker: Broker, storage_url: str
) -> None:
    """Nothing of its epoch is stored: the notice says acked_through 0 and releases nothing."""
    registered = dataclasses.replace(GW, key=generate_signing_key())  # not the agent's key
    async with running_site(tmp_path, broker, storage_url) as site:
        agent, storage = site.agent, site.storage
        await register(storage, registered)
        await agent.seal(2)

        await site.left_out_shown()
        await wait_until(lambda: _heard(site.acks), lambda n: n >= 1)  # another subscriber
        [notice] = [decode_ack(payload) for _, payload in site.acks]
        assert (notice.epoch, notice.acked_through, notice.seq) == (agent.outbox.epoch, 0, None)
        assert notice.keys == (registered.key.kid,)
        assert await agent.undelivered() == [1, 2]
        assert agent.publisher.last_ack is None  # nothing was ever released
        await wait_until(
            lambda: _refused(storage, GW.gateway, Reason.UNKNOWN_KEY), lambda n: n >= 2
        )
