"""An ACK whose `keys` leaves out the key the agent signs with.

The collector's signed ACK names the kids it takes this gateway's blocks under (contract §3,
`keys`). One that does not name the agent's own signing key says the collector revoked,
retired or never held it: every block signed with it from then on is refused, and no ACK
answers them. The agent used to read `keys` only for the key it announced, and went on
sending without a word; `edge-agent status` and the metrics showed nothing but a growing
backlog. Now it is logged as a fact (`gateway_key_left_out`), kept in the outbox (a restart,
after which no ACK comes, still shows it), shown by `status` (`key.left_out`) and the gauge
`gz_agent_gateway_key_left_out`, and cleared by an ACK that names the key again.

Real Mosquitto, the agent's real outbox and publisher; the test signs the ACKs as the
collector (the key the agent trusts), as the publisher tests do.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
from structlog.testing import capture_logs

from edge_agent.core.agent_status import KeyStatus
from edge_agent.shell.metrics import AgentMetrics
from edge_agent.shell.rotation import key_status
from hostkit.keyfiles import write_key_pair
from specs.ack import MAX_ACK_KEYS, Ack
from specs.records import KeyRecord, iso_time
from specs.signing import generate_signing_key, signature_properties
from tests.support.agent_rig import AgentRig, running_agent
from tests.support.broker import Broker
from tests.support.collector_client import publish_properties, sim_gateway
from tests.support.collector_env import wait_until

pytestmark = pytest.mark.timeout(60)

GW = sim_gateway(53)
COLLECTOR_KEY = generate_signing_key()
OTHER = generate_signing_key().kid  # a key the collector takes, not the agent's


@dataclass
class Link:
    agent: AgentRig
    client: aiomqtt.Client
    key_file: Path

    async def seal_and_ack(self, keys: tuple[str, ...] | None) -> None:
        """Seal one block and answer it as the collector, its ACK naming `keys`."""
        await self.agent.seal(1)
        await self.ack((await self.agent.undelivered())[-1], keys)

    async def ack(self, seq: int, keys: tuple[str, ...] | None) -> None:
        await self.publish_ack(seq, seq, keys)
        await wait_until(self.agent.undelivered, lambda seqs: seqs == [])

    async def publish_ack(
        self, through: int, seq: int | None, keys: tuple[str, ...] | None
    ) -> None:
        """The collector's ACK of block `seq`, all through `through` stored, naming `keys`.

        `seq` None: an ACK answering no block (the collector's key notice).
        """
        epoch = self.agent.outbox.epoch
        issued = iso_time(time.time())
        body = Ack(GW.gateway, epoch, through, (), seq, issued, keys=keys).encode()
        properties = publish_properties(signature_properties(COLLECTOR_KEY.sign(body)))
        await self.client.publish(GW.topics.ack, body, qos=1, properties=properties)

    def left_out(self) -> float | None:
        """Read anew at each call (an ACK changes it between two reads)."""
        return self.agent.outbox.delivery.key_left_out

    async def status(self) -> KeyStatus:
        """The key part of `edge-agent status`, as the running agent answers it."""
        return await key_status(self.agent.outbox, self.key_file, GW.key)


@contextlib.asynccontextmanager
async def linked(tmp_path: Path, broker: Broker) -> AsyncIterator[Link]:
    key_file = tmp_path / "keys" / "gateway.key"
    if not key_file.exists():
        write_key_pair(key_file, GW.key)
    async with (
        running_agent(tmp_path, broker.port, GW, COLLECTOR_KEY.public()) as agent,
        aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as client,
    ):
        yield Link(agent, client, key_file)


def _gauge(metrics: AgentMetrics) -> float:
    for line in metrics.exposition().decode().splitlines():
        if line.startswith("gz_agent_gateway_key_left_out "):
            return float(line.split()[1])
    raise AssertionError("gz_agent_gateway_key_left_out is not exported")


async def test_an_ack_leaving_out_the_signing_key_is_logged_shown_and_kept(
    tmp_path: Path, broker: Broker
) -> None:
    metrics = AgentMetrics([])
    async with linked(tmp_path, broker) as link:
        await link.seal_and_ack((GW.key.kid, OTHER))
        with capture_logs() as logs:
            before = time.time()
            await link.seal_and_ack((OTHER,))  # revoked at the collector, say
        [event] = [e for e in logs if e["event"] == "gateway_key_left_out"]
        assert event["log_level"] == "error"
        assert (event["kid"], event["keys"]) == (GW.key.kid, [OTHER])
        since = link.left_out()
        assert since is not None
        assert since >= before
        assert await link.status() == KeyStatus(GW.key.kid, left_out=since)
        await metrics.refresh(link.agent.outbox)
        assert _gauge(metrics) == 1.0

        with capture_logs() as logs:  # the same again: no second line, the time kept
            await link.seal_and_ack((OTHER,))
        assert [e for e in logs if e["event"] == "gateway_key_left_out"] == []
        assert link.left_out() == since

    # Started again: no ACK will come (the collector refuses every block), the fact stays.
    async with linked(tmp_path, broker) as link:
        assert link.left_out() == since
        with capture_logs() as logs:
            await link.seal_and_ack((OTHER, GW.key.kid))  # registered again
        assert [e["event"] for e in logs if "gateway_key" in e["event"]] == [
            "gateway_key_listed_again"
        ]
        assert link.left_out() is None
        assert await link.status() == KeyStatus(GW.key.kid)
        await metrics.refresh(link.agent.outbox)
        assert _gauge(metrics) == 0.0


def _announcement(kid: str, replaces: str) -> KeyRecord:
    key = generate_signing_key()
    public_key = key.public().public_pem().decode("ascii")
    return KeyRecord(iso_time(time.time()), kid, key.alg, public_key, replaces)


async def test_a_key_announced_before_the_signing_one_does_not_hide_it(
    tmp_path: Path, broker: Broker
) -> None:
    """The agent rotated from `older` to the key it signs with: an ACK naming `older` alone
    (still in its overlap; the signing key revoked) leaves the signing key out all the same."""
    older = generate_signing_key().kid
    async with linked(tmp_path, broker) as link:
        for record in (_announcement(older, "0" * 16), _announcement(GW.key.kid, older)):
            block = await link.agent.outbox.seal((record,), now=time.time(), clock_synced=True)
            await link.ack(block.seq, (older, GW.key.kid))
        with capture_logs() as logs:
            await link.seal_and_ack((older,))
        assert [e["event"] for e in logs if "gateway_key" in e["event"]] == ["gateway_key_left_out"]
        assert link.left_out() is not None


@pytest.mark.parametrize(
    "answer",
    ["no keys field", "a full list", "the announced key"],
)
async def test_an_ack_that_cannot_tell_raises_nothing(
    tmp_path: Path, broker: Broker, answer: str
) -> None:
    """A collector before `keys` (no field); a full list (the newest MAX_ACK_KEYS only, which
    may leave out a key still taken); a rotation under way, the collector naming the key this
    outbox announced (with `ingest.key_overlap` 0 the old one is retired at once, and the
    agent switches to the new one)."""
    async with linked(tmp_path, broker) as link:
        keys: tuple[str, ...] | None
        if answer == "no keys field":
            keys = None
        elif answer == "a full list":
            keys = tuple(generate_signing_key().kid for _ in range(MAX_ACK_KEYS))
        else:
            successor = generate_signing_key().kid
            record = _announcement(successor, GW.key.kid)
            block = await link.agent.outbox.seal((record,), now=time.time(), clock_synced=True)
            await link.ack(block.seq, (successor,))
            keys = (successor,)
        with capture_logs() as logs:
            await link.seal_and_ack(keys)
        assert [e for e in logs if e["event"] == "gateway_key_left_out"] == []
        assert link.left_out() is None


async def test_an_ack_older_than_the_switch_to_the_signing_key_raises_nothing(
    tmp_path: Path, broker: Broker
) -> None:
    """Several collectors ACK in any order: the ACK of a block sealed before the rotation,
    issued before the collector stored the new key's announcement, may arrive after the ACK
    that named the new key and the switch to it. Its `keys` (the old key alone) says nothing
    of the new key; the next block's ACK, issued after the switch, still tells."""
    successor = generate_signing_key()
    public_key = successor.public().public_pem().decode("ascii")
    async with linked(tmp_path, broker) as link:
        outbox = link.agent.outbox
        await link.agent.seal(1)
        [older] = await link.agent.undelivered()
        record = KeyRecord(
            iso_time(time.time()), successor.kid, successor.alg, public_key, GW.key.kid
        )
        announced = await outbox.seal((record,), now=time.time(), clock_synced=True)
        both = (GW.key.kid, successor.kid)
        await link.publish_ack(older - 1, announced.seq, both)  # collector B: stored it
        await wait_until(link.agent.undelivered, lambda seqs: seqs == [older])
        await outbox.use_key(successor)  # the rotation completes
        with capture_logs() as logs:
            await link.publish_ack(older, older, (GW.key.kid,))  # collector A, issued earlier
            await wait_until(link.agent.undelivered, lambda seqs: seqs == [])
        assert [e for e in logs if e["event"] == "gateway_key_left_out"] == []
        assert link.left_out() is None

        with capture_logs() as logs:  # issued after the switch: the new key is left out
            await link.seal_and_ack((GW.key.kid,))
        assert [e["kid"] for e in logs if e["event"] == "gateway_key_left_out"] == [successor.kid]


async def _left_out(link: Link) -> float | None:
    return link.left_out()


async def test_the_collectors_key_notice_tells_after_a_switch(
    tmp_path: Path, broker: Broker
) -> None:
    """The collector answers a block refused for its key with an ACK of what it stored, `seq`
    null (it answers no block): issued after the refusal, it is no older than the switch to
    the refused key, and tells even when that key came by a rotation."""
    successor = generate_signing_key()
    public_key = successor.public().public_pem().decode("ascii")
    async with linked(tmp_path, broker) as link:
        outbox = link.agent.outbox
        record = KeyRecord(
            iso_time(time.time()), successor.kid, successor.alg, public_key, GW.key.kid
        )
        announced = await outbox.seal((record,), now=time.time(), clock_synced=True)
        await link.ack(announced.seq, (GW.key.kid, successor.kid))
        await outbox.use_key(successor)  # the rotation completes
        await link.agent.seal(1)  # refused: the admin revoked the new key meanwhile
        with capture_logs() as logs:
            await link.publish_ack(announced.seq, None, (GW.key.kid,))
            since = await wait_until(lambda: _left_out(link), lambda seen: seen is not None)
        assert [e["kid"] for e in logs if e["event"] == "gateway_key_left_out"] == [successor.kid]
        assert (await link.status()).left_out == since
        assert await link.agent.undelivered() == [announced.seq + 1]  # nothing released
