"""`edge-agent keys rotate` end to end: the old key announces the new one, the agent switches
once the collector holds the announcement, and nothing it sealed is lost on the way.

Real Mosquitto, the agent's real outbox and publisher, the collector's real ingest (SQLite and
PostgreSQL). The collector retires the old key after its overlap: what the agent still had
undelivered was signed again with the new key, so it is stored, not refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

from collector.model import Reason
from collector.readmodel import EVERYTHING
from collector.verify.service import verify_stored
from edge_agent.shell.keyfile import load_private_key
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.rotation import CurrentKey, RotationWatcher, announce_next_key
from hostkit.keyfiles import next_key_path, retired_key_path, write_key_pair
from simulators.lifecycle import cancel_task
from specs.block import decode_block
from specs.records import KeyRecord
from specs.signing import ED25519, generate_signing_key, load_verify_key
from tests.support.agent_rig import AgentRig, identity_of, running_agent
from tests.support.broker import Broker
from tests.support.cli_runs import agent_cli, example_site
from tests.support.collector_client import sim_gateway
from tests.support.collector_env import register, running_ingest, wait_until

SCHEMAS = Path(__file__).resolve().parents[2] / "specs" / "schemas"
GW = sim_gateway(51)


# --- the command --------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Path:
    copy = example_site(tmp_path)
    assert agent_cli("keys", "init", "-c", str(copy)).exit_code == 0
    return copy


def _exported(site: Path) -> list[dict[str, object]]:
    result = agent_cli("outbox", "export", "-c", str(site), "--json")
    assert result.exit_code == 0, result.output
    blocks = json.loads(result.stdout)["blocks"]
    assert isinstance(blocks, list)
    return blocks


def test_keys_rotate_stages_the_next_key_and_announces_it_under_the_current_one(
    site: Path,
) -> None:
    key_file = site.parent / "keys" / "gateway.key"
    old = load_private_key(key_file)

    result = agent_cli("keys", "rotate", "-c", str(site))

    assert result.exit_code == 0, result.output
    staged = next_key_path(key_file)
    new = load_private_key(staged)
    assert stat.S_IMODE(staged.stat().st_mode) == 0o600
    assert load_verify_key(Path(f"{staged}.pub").read_bytes()).kid == new.kid
    assert new.kid in result.stdout
    # Until the collector holds the announcement, the current key stays the key.
    assert load_private_key(key_file).kid == old.kid
    [block] = _exported(site)
    assert block["kid"] == old.kid
    payload = str(block["payload"]).encode()
    [record] = decode_block(payload).records
    assert record == KeyRecord(
        t=record.t if isinstance(record, KeyRecord) else "",
        kid=new.kid,
        alg=ED25519,
        public_key=new.public().public_pem().decode(),
        replaces=old.kid,
    )

    # The announcement is a gz/1 block like any other: its JSON Schema takes it.
    schema = json.loads((SCHEMAS / "block.schema.json").read_text(encoding="utf-8"))
    assert list(Draft202012Validator(schema).iter_errors(json.loads(payload))) == []

    again = agent_cli("keys", "rotate", "-c", str(site))
    assert again.exit_code == 0, again.output
    assert "staged already" in again.stdout
    assert load_private_key(staged).kid == new.kid
    assert [b["kid"] for b in _exported(site)] == [old.kid, old.kid]


def test_a_staged_next_key_others_may_read_is_refused(site: Path) -> None:
    assert agent_cli("keys", "rotate", "-c", str(site)).exit_code == 0
    staged = next_key_path(site.parent / "keys" / "gateway.key")
    staged.chmod(0o644)
    result = agent_cli("check", "-c", str(site))
    assert result.exit_code == 2
    assert f"chmod 600 {staged}" in result.stderr
    assert agent_cli("keys", "rotate", "-c", str(site)).exit_code == 2


# --- the switch, against a real collector -------------------------------------------------


@contextlib.asynccontextmanager
async def watching(agent: AgentRig, key_file: Path) -> AsyncIterator[CurrentKey]:
    current = CurrentKey(load_private_key(key_file))
    task = asyncio.create_task(RotationWatcher(agent.outbox, key_file, current).run())
    try:
        yield current
    finally:
        await cancel_task(task)


async def test_the_agent_switches_once_the_collector_holds_the_announcement(
    tmp_path: Path, broker: Broker, storage_url: str
) -> None:
    key_file = tmp_path / "keys" / "gateway.key"
    write_key_pair(key_file, GW.key)
    collector_key = generate_signing_key()
    async with (
        running_ingest(broker.port, storage_url, collector_key, key_overlap=0) as (_, storage),
        running_agent(tmp_path / "agent", broker.port, GW, collector_key.public()) as agent,
        watching(agent, key_file) as current,
    ):
        await register(storage, GW)
        await agent.seal(2)
        await wait_until(agent.undelivered, lambda seqs: seqs == [])

        announced = await announce_next_key(
            agent.outbox, key_file, GW.key, ED25519, clock_synced=True
        )
        agent.publisher.notify_sealed(announced.seq)
        new = announced.key
        await wait_until(lambda: _kid(current), lambda kid: kid == new.kid)
        assert load_private_key(key_file).kid == new.kid
        assert load_private_key(retired_key_path(key_file, GW.key.kid)).kid == GW.key.kid
        assert not next_key_path(key_file).exists()

        # Overlap 0: the old key is retired at once; the agent signs with the new one.
        await agent.seal(2)
        await wait_until(agent.undelivered, lambda seqs: seqs == [])
        keys = {key.kid: key for key in await storage.keys(GW.gateway)}
        assert keys[new.kid].announced_by == GW.key.kid
        assert keys[GW.key.kid].retired_at is not None
        assert await storage.audit(gateway=GW.gateway, reason=Reason.RETIRED_KEY) == ()
        report = await verify_stored(storage, EVERYTHING, gateway=GW.gateway)  # type: ignore[arg-type]
        assert (report.blocks, report.verified, report.broken) == (5, 5, ())


async def _kid(current: CurrentKey) -> str:
    return current.key.kid


async def test_a_backlog_is_signed_again_with_the_new_key(tmp_path: Path) -> None:
    old, new = GW.key, generate_signing_key()
    async with open_outbox(tmp_path / "outbox.db", identity_of(GW), old) as outbox:
        for seq in (1, 2, 3):
            await outbox.seal((GW.reading(seq),), now=1.0, clock_synced=True)
        await outbox.mark_delivered(epoch=outbox.epoch, through=1, also=None, now=2.0)
        before = {b.seq: b.payload for b in await outbox.undelivered(after=0, limit=10)}

        assert await outbox.use_key(new) == 2

        after = await outbox.undelivered(after=0, limit=10)
        assert {b.seq: b.payload for b in after} == before  # the sealed bytes never change
        for block in after:
            assert block.signature.kid == new.kid
            new.public().verify(block.signature, block.payload)
        sealed = await outbox.seal((GW.reading(4),), now=3.0, clock_synced=True)
        assert sealed.signature.kid == new.kid
