"""`edge-agent keys rotate` end to end: the old key announces the new one, the agent switches
once the collector holds the announcement, and nothing it sealed is lost on the way.

Real Mosquitto, the agent's real outbox and publisher, the collector's real ingest (SQLite and
PostgreSQL). The collector retires the old key after its overlap: what the agent still had
undelivered was signed again with the new key, so it is stored, not refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from structlog.testing import capture_logs

from collector.model import Reason
from collector.readmodel import EVERYTHING
from collector.storage.base import Storage
from collector.verify.service import verify_stored
from edge_agent.config.loader import load_site_config
from edge_agent.core.agent_status import KeyStatus
from edge_agent.core.plan_compile import identity_of as plan_identity
from edge_agent.shell.keyfile import load_private_key
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.rotation import (
    CurrentKey,
    RotationWatcher,
    announce_next_key,
    complete_rotation,
    key_status,
    refused_key_path,
)
from hostkit.keyfiles import next_key_path, retired_key_path, write_key_pair
from simulators.lifecycle import cancel_task
from specs.block import decode_block
from specs.records import KeyRecord
from specs.signing import ED25519, generate_signing_key, load_verify_key
from tests.support.agent_rig import AgentRig, identity_of, running_agent
from tests.support.broker import Broker
from tests.support.cli_runs import agent_cli, example_site
from tests.support.collector_client import SimGateway, gateway_link, sim_gateway
from tests.support.collector_env import register, running_ingest, wait_until
from tests.support.postgres import sql_rows

SCHEMAS = Path(__file__).resolve().parents[2] / "specs" / "schemas"
GW = sim_gateway(51)
HOUR = 3600.0


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


async def _acked(site: Path, keys: tuple[str, ...]) -> None:
    """Release every block of the outbox as an ACK naming `keys` would."""
    config = load_site_config(site)
    key = load_private_key(config.signing.key_file)
    async with open_outbox(config.outbox.path, plan_identity(config), key) as outbox:
        last = (await outbox.stats()).last_seq
        await outbox.delivery.mark_delivered(
            epoch=outbox.epoch, through=last, also=None, now=1.0, keys=keys
        )


def test_keys_rotate_after_a_refusal_sets_the_refused_key_aside_and_announces_a_new_one(
    site: Path,
) -> None:
    key_file = site.parent / "keys" / "gateway.key"
    current = load_private_key(key_file)
    assert agent_cli("keys", "rotate", "-c", str(site)).exit_code == 0
    refused = load_private_key(next_key_path(key_file))
    asyncio.run(_acked(site, keys=(current.kid,)))  # stored, but the new key not taken

    result = agent_cli("keys", "rotate", "-c", str(site))

    assert result.exit_code == 0, result.output
    kept = refused_key_path(key_file, refused.kid)
    assert f"refused the key staged before: kept at {kept}" in result.stdout
    assert load_private_key(kept).kid == refused.kid
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert load_verify_key(Path(f"{kept}.pub").read_bytes()).kid == refused.kid
    new = load_private_key(next_key_path(key_file))
    assert new.kid != refused.kid
    assert f"new ed25519 key {new.kid}" in result.stdout
    assert load_private_key(key_file).kid == current.kid
    announced = decode_block(str(_exported(site)[-1]["payload"]).encode()).records
    assert [(r.kid, r.replaces) for r in announced if isinstance(r, KeyRecord)] == [
        (new.kid, current.kid)
    ]


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
        with capture_logs() as logs:
            agent.publisher.notify_sealed(announced.seq)
            new = announced.key
            await wait_until(lambda: _kid(current), lambda kid: kid == new.kid)
        # Overlap 0: the ACK of the announcement names the new key alone, and that is no
        # sign of the collector refusing the old one (gateway_key_left_out): it switches.
        assert "gateway_key_left_out" not in [e["event"] for e in logs]
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
        assert agent.outbox.delivery.key_left_out is None


async def _kid(current: CurrentKey) -> str:
    return current.key.kid


WINDOW = 10  # blocks sealed after the announcement's ACK


async def test_a_refused_announcement_never_makes_the_agent_switch(
    tmp_path: Path, broker: Broker, storage_url: str
) -> None:
    """The collector stores the announcement but refuses its key (here: the kid is another
    gateway's already). Its ACK must not make the agent switch: signed with a key the
    collector does not take for this gateway, every later block would be refused for good."""
    key_file = tmp_path / "keys" / "gateway.key"
    write_key_pair(key_file, GW.key)
    taken = generate_signing_key()
    write_key_pair(next_key_path(key_file), taken)  # staged: `keys rotate` announces it
    holder = dataclasses.replace(sim_gateway(52), key=taken)
    collector_key = generate_signing_key()
    async with (
        running_ingest(broker.port, storage_url, collector_key) as (_, storage),
        _registered(storage, GW, holder),
        running_agent(tmp_path / "agent", broker.port, GW, collector_key.public()) as agent,
    ):
        current = CurrentKey(load_private_key(key_file))
        await agent.seal(2)
        await wait_until(agent.undelivered, lambda seqs: seqs == [])

        announced = await announce_next_key(
            agent.outbox, key_file, GW.key, ED25519, clock_synced=True
        )
        assert announced.key.kid == taken.kid
        agent.publisher.notify_sealed(announced.seq)
        await wait_until(agent.undelivered, lambda seqs: seqs == [])  # stored and ACKed...
        [refusal] = await storage.audit(gateway=GW.gateway, reason=Reason.BAD_KEY_ANNOUNCEMENT)
        assert f"registered to gateway {holder.gateway}" in refusal.detail  # ...key refused
        with capture_logs() as logs:
            await RotationWatcher(agent.outbox, key_file, current).check()  # what that ACK starts

        await agent.seal(WINDOW)
        fate = await wait_until(
            lambda: _fate(storage, storage_url, after=announced.seq),
            lambda seen: sum(seen) >= WINDOW,
        )
        assert fate == (WINDOW, 0), "(blocks stored, messages refused) after the ACK"
        assert current.key.kid == GW.key.kid
        status = await key_status(agent.outbox, key_file, current.key)
        assert status == KeyStatus(GW.key.kid, taken.kid, "refused")  # `edge-agent status`
        assert [e["event"] for e in logs] == ["gateway_key_refused"]
        assert (logs[0]["kid"], logs[0]["current"]) == (taken.kid, GW.key.kid)

    # Stopped and started again: the refusal is remembered, nothing switches at the start.
    async with open_outbox(tmp_path / "agent" / "outbox.db", identity_of(GW), GW.key) as outbox:
        assert await complete_rotation(outbox, key_file) is None
    assert load_private_key(key_file).kid == GW.key.kid
    assert load_private_key(next_key_path(key_file)).kid == taken.kid


@contextlib.asynccontextmanager
async def _registered(storage: Storage, *gateways: SimGateway) -> AsyncIterator[None]:
    await register(storage, *gateways)
    yield


async def _fate(storage: Storage, url: str, *, after: int) -> tuple[int, int]:
    """(blocks of GW stored above seq `after`, GW's messages refused for their key)."""
    [(stored,)] = await sql_rows(
        url, "SELECT count(*) FROM blocks WHERE gateway = ? AND seq > ?", GW.gateway, after
    )
    refused = 0
    for reason in (Reason.KEY_NOT_OWNED, Reason.UNKNOWN_KEY):
        refused += sum(row.count for row in await storage.audit(gateway=GW.gateway, reason=reason))
    return int(stored), refused


async def test_a_backlog_is_signed_again_with_the_new_key(tmp_path: Path) -> None:
    old, new = GW.key, generate_signing_key()
    async with open_outbox(tmp_path / "outbox.db", identity_of(GW), old) as outbox:
        for seq in (1, 2, 3):
            await outbox.seal((GW.reading(seq),), now=1.0, clock_synced=True)
        await outbox.delivery.mark_delivered(epoch=outbox.epoch, through=1, also=None, now=2.0)
        before = {b.seq: b.payload for b in await outbox.delivery.undelivered(after=0, limit=10)}

        assert await outbox.use_key(new) == 2

        after = await outbox.delivery.undelivered(after=0, limit=10)
        assert {b.seq: b.payload for b in after} == before  # the sealed bytes never change
        for block in after:
            assert block.signature.kid == new.kid
            new.public().verify(block.signature, block.payload)
        sealed = await outbox.seal((GW.reading(4),), now=3.0, clock_synced=True)
        assert sealed.signature.kid == new.kid


async def test_a_rotation_whose_ack_was_lost_completes_on_the_key_notice_after_the_overlap(
    tmp_path: Path, broker: Broker, storage_url: str
) -> None:
    """Blocks 1-3 and the announcement at 5 stored, 4 not yet, the ACK of 5 lost; the agent
    is back after the overlap, its old key retired: 4 and 5, signed by it, are refused. The
    key notice names the new key: the agent switches, signs 4 and 5 again, both are taken."""
    key_file = tmp_path / "keys" / "gateway.key"
    write_key_pair(key_file, GW.key)
    folder = tmp_path / "agent"
    async with open_outbox(folder / "outbox.db", identity_of(GW), GW.key) as outbox:
        for seq in range(1, 5):
            await outbox.seal((GW.reading(seq),), now=time.time(), clock_synced=True)
        announced = await announce_next_key(outbox, key_file, GW.key, ED25519, clock_synced=True)
        sealed = {b.seq: b.payload for b in await outbox.delivery.undelivered(after=0, limit=9)}
        await outbox.delivery.mark_delivered(
            epoch=outbox.epoch, through=3, also=None, now=time.time(), keys=(GW.key.kid,)
        )
    assert announced.seq == 5
    new, now = announced.key, [time.time()]
    collector_key = generate_signing_key()
    async with running_ingest(
        broker.port, storage_url, collector_key, key_overlap=HOUR, clock=lambda: now[0]
    ) as (_, storage):
        await register(storage, GW)
        async with gateway_link(broker.port, GW) as link:  # the ACK of 5 never reaches the agent
            for seq in (1, 2, 3, 5):
                await link.publish(sealed[seq])
                assert (await link.next_ack()).ack.seq == seq
        now[0] += 2 * HOUR  # the agent comes back after the overlap: the old key is retired
        async with (
            running_agent(folder, broker.port, GW, collector_key.public()) as agent,
            watching(agent, key_file) as current,
        ):
            await wait_until(lambda: _kid(current), lambda kid: kid == new.kid, timeout=30)
            await wait_until(agent.undelivered, lambda seqs: seqs == [], timeout=30)
            assert agent.outbox.delivery.key_left_out is None
        assert await storage.audit(gateway=GW.gateway, reason=Reason.RETIRED_KEY) != ()
        assert load_private_key(key_file).kid == new.kid
        report = await verify_stored(storage, EVERYTHING, gateway=GW.gateway)  # type: ignore[arg-type]
        assert (report.blocks, report.verified, report.broken) == (5, 5, ())
