"""The collector's key is rotated without leaving a gateway behind.

`collector keys rotate` stages the next key; gateways list both public keys
(`uplink.collector_keys`) and take ACKs signed by either; `--activate` switches the collector
to the new key (kept old one 0600 beside it). An agent that does not trust the new key
releases nothing it ACKs.
"""

from __future__ import annotations

import asyncio
import shutil
import stat
import time
from pathlib import Path

import aiomqtt
import pytest

from collector.keyfiles import load_key_file
from edge_agent.config import ConfigError, load_site_config
from edge_agent.core.trusted_keys import TrustedKeys
from specs.ack import Ack
from specs.records import iso_time
from specs.signing import (
    BadSignatureError,
    generate_signing_key,
    load_verify_key,
    signature_from_properties,
    signing_key_from_seed,
)
from tests.support.agent_rig import running_agent
from tests.support.broker import Broker, free_port
from tests.support.cli_runs import agent_cli, collector_cli, example_site
from tests.support.collector_client import publish_properties, sim_gateway
from tests.support.collector_env import register, running_ingest, wait_until, write_collector_config
from tests.support.config_files import line_of

OLD = signing_key_from_seed(b"old-collector-key-for-rotation-1")
NEW = signing_key_from_seed(b"new-collector-key-for-rotation-2")
GW = sim_gateway(31)
REQUIRED = "the collector's public key is required"


# --- the agent's config -------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Path:
    copy = example_site(tmp_path)
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "old.pub").write_bytes(OLD.public().public_pem())
    (keys / "new.pub").write_bytes(NEW.public().public_pem())
    return copy


def _uplink(site: Path, line: str) -> None:
    text = site.read_text(encoding="utf-8")
    old = "  collector_key: keys/collector.pub   # verifies the collector's ACKs and commands\n"
    assert old in text
    site.write_text(text.replace(old, line), encoding="utf-8")


def test_collector_keys_lists_every_key_the_agent_trusts(site: Path) -> None:
    _uplink(site, "  collector_keys: [keys/old.pub, keys/new.pub]\n")
    config = load_site_config(site)
    assert config.uplink.collector_key_files == (
        site.parent / "keys" / "old.pub",
        site.parent / "keys" / "new.pub",
    )
    assert agent_cli("check", "-c", str(site)).exit_code == 0


@pytest.mark.parametrize(
    ("uplink", "key", "message"),
    [
        (
            "  collector_key: keys/old.pub\n  collector_keys: [keys/new.pub]\n",
            "uplink.collector_keys",
            "not both",
        ),
        ("", "uplink.collector_key", "the collector's public key is required"),
        (
            "  collector_keys: []\n",
            "uplink.collector_key",
            "the collector's public key is required",
        ),
        (
            "  collector_keys:\n    - keys/old.pub\n    - keys/old.pub\n",
            "uplink.collector_keys[1]",
            "listed already as collector_keys[0]",
        ),
    ],
)
def test_a_wrong_collector_keys_shape_is_named_by_line_and_key(
    site: Path, uplink: str, key: str, message: str
) -> None:
    _uplink(site, uplink)
    with pytest.raises(ConfigError) as raised:
        load_site_config(site)
    [issue] = [i for i in raised.value.issues if i.path == key]
    assert message in issue.message
    assert issue.line is not None
    result = agent_cli("check", "-c", str(site))
    assert result.exit_code == 2
    assert f"{site}:{issue.line}: {key}: " in result.stderr


def test_an_unusable_collector_key_file_is_named_by_line_and_key(site: Path) -> None:
    (site.parent / "keys" / "broken.pub").write_text("not a key\n", encoding="utf-8")
    _uplink(site, "  collector_keys:\n    - keys/old.pub\n    - keys/broken.pub\n")
    line = line_of(site.read_text(encoding="utf-8"), "keys/broken.pub")
    for command in ("check", "run"):
        result = agent_cli(command, "-c", str(site))
        assert result.exit_code == 2, result.output
        broken = site.parent / "keys" / "broken.pub"
        assert f"{site}:{line}: uplink.collector_keys[1]: {broken}: " in result.stderr


def test_two_files_of_one_key_are_refused(site: Path) -> None:
    shutil.copyfile(site.parent / "keys" / "old.pub", site.parent / "keys" / "copy.pub")
    _uplink(site, "  collector_keys:\n    - keys/old.pub\n    - keys/copy.pub\n")
    result = agent_cli("check", "-c", str(site))
    assert result.exit_code == 2
    line = line_of(site.read_text(encoding="utf-8"), "keys/copy.pub")
    assert f"{site}:{line}: uplink.collector_keys[1]: " in result.stderr
    assert f"key {OLD.kid} is listed already" in result.stderr


def test_trusted_keys_verify_by_kid_and_refuse_any_other_key() -> None:
    trusted = TrustedKeys((OLD.public(), NEW.public()))
    for key in (OLD, NEW):
        trusted.verify(key.sign(b"ack"), b"ack")
    with pytest.raises(BadSignatureError, match="none of the trusted keys"):
        trusted.verify(generate_signing_key().sign(b"ack"), b"ack")
    with pytest.raises(BadSignatureError):
        trusted.verify(OLD.sign(b"ack"), b"another ack")
    with pytest.raises(ValueError, match="repeat"):
        TrustedKeys((OLD.public(), OLD.public()))


# --- collector keys rotate ----------------------------------------------------------------


def test_collector_keys_rotate_stages_then_activates_keeping_the_old_key(tmp_path: Path) -> None:
    config = write_collector_config(tmp_path, broker_port=1, api_port=free_port())
    assert collector_cli("keys", "init", "-c", str(config)).exit_code == 0
    key_file = tmp_path / "keys" / "collector.key"
    old = load_key_file(key_file)

    staged = collector_cli("keys", "rotate", "-c", str(config))
    assert staged.exit_code == 0, staged.output
    next_file = tmp_path / "keys" / "collector.key.next"
    new = load_key_file(next_file)
    assert staged.stdout.strip() == new.kid != old.kid
    assert stat.S_IMODE(next_file.stat().st_mode) == 0o600
    assert f"{next_file}.pub" in staged.stderr
    # Staged only: the collector still signs with the old key.
    assert load_key_file(key_file).kid == old.kid
    again = collector_cli("keys", "rotate", "-c", str(config))
    assert again.exit_code == 1
    assert "staged already" in again.stderr

    activated = collector_cli("keys", "rotate", "--activate", "-c", str(config))
    assert activated.exit_code == 0, activated.output
    assert activated.stdout.strip() == new.kid
    assert load_key_file(key_file).kid == new.kid
    public = load_verify_key((tmp_path / "keys" / "collector.key.pub").read_bytes())
    assert public.kid == new.kid
    retired = tmp_path / "keys" / f"collector.key.retired-{old.kid}"
    assert load_key_file(retired).kid == old.kid
    assert stat.S_IMODE(retired.stat().st_mode) == 0o600
    assert not next_file.exists()
    assert collector_cli("check", "-c", str(config)).exit_code == 0

    nothing = collector_cli("keys", "rotate", "--activate", "-c", str(config))
    assert nothing.exit_code == 1
    assert "no key is staged" in nothing.stderr


# --- ACKs across the rotation, real broker and storage ------------------------------------


async def test_an_agent_trusting_both_keys_takes_acks_before_and_after_the_rotation(
    tmp_path: Path, broker: Broker, storage_url: str
) -> None:
    trusted = TrustedKeys((OLD.public(), NEW.public()))
    async with running_agent(tmp_path, broker.port, GW, trusted) as agent:
        async with running_ingest(broker.port, storage_url, OLD) as (_, storage):
            await register(storage, GW)
            await agent.seal(2)
            await wait_until(agent.undelivered, lambda seqs: seqs == [])
        # The collector restarts with the activated key: its ACKs now carry the new kid.
        async with running_ingest(broker.port, storage_url, NEW):
            await agent.seal(2)
            await wait_until(agent.undelivered, lambda seqs: seqs == [])


async def test_an_agent_not_trusting_the_new_key_releases_nothing_it_acks(
    tmp_path: Path, broker: Broker
) -> None:
    storage_url = f"sqlite:///{tmp_path / 'collector.db'}"
    async with (
        running_agent(tmp_path, broker.port, GW, OLD.public(), ack_timeout=30) as agent,
        running_ingest(broker.port, storage_url, NEW) as (_, storage),
        aiomqtt.Client("127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5) as watcher,
    ):
        await watcher.subscribe(GW.topics.ack, qos=1)
        await register(storage, GW)
        await agent.seal(2)
        # Both ACKs (signed by the new key) have passed the broker on their way to the agent.
        seen: list[str] = []
        async with asyncio.timeout(10):
            async for message in watcher.messages:
                properties = getattr(message.properties, "UserProperty", None)
                seen.append(signature_from_properties(properties).kid)
                if len(seen) == 2:
                    break
        assert seen == [NEW.kid, NEW.kid]
        # Queued behind them for the agent: an ACK through seq 1 under the key it trusts.
        # Once it is taken, the two before it were judged, and they released nothing.
        marker = Ack(
            gateway=GW.gateway,
            epoch=agent.outbox.epoch,
            acked_through=1,
            missing=(),
            seq=1,
            issued_at=iso_time(time.time()),
            acked_hash=None,
            conflict=False,
        )
        body = marker.encode()
        await watcher.publish(
            GW.topics.ack, body, qos=1, properties=publish_properties(GW.sign(body, OLD))
        )
        await wait_until(agent.undelivered, lambda seqs: seqs == [2])
