"""`edge-agent keys init | check | run | status` on a copy of the example site map in tmp."""

from __future__ import annotations

import asyncio
import re
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edge_agent.cli import main
from edge_agent.cli.status import FAILED_EXIT, NOT_RUNNING_EXIT
from edge_agent.config import load_site_config
from edge_agent.core.plan_compile import identity_of
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_reads import read_outbox_stats
from specs.records import Quality, Reading, iso_time
from specs.signing import load_signing_key, load_verify_key, signing_key_from_seed
from tests.support.cli_runs import example_site
from tests.support.config_files import at_gateway_key_line

GATEWAY = "91360100MA35GW001H-GW01"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The example site map copied into tmp: its keys/ and state/ then live in tmp too."""
    return example_site(tmp_path)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- keys init ----------------------------------------------------------------------------


def test_keys_init_creates_a_0600_key_and_the_public_key_and_prints_the_kid(site: Path) -> None:
    key_file = site.parent / "keys" / "gateway.key"
    public_file = site.parent / "keys" / "gateway.key.pub"
    assert not key_file.exists()

    result = invoke("keys", "init", "-c", str(site))

    assert result.exit_code == 0, result.output
    assert key_file.is_file()
    assert mode_of(key_file) == 0o600
    assert public_file.is_file()
    key = load_signing_key(key_file.read_bytes())
    public = load_verify_key(public_file.read_bytes())
    assert public.kid == key.kid
    assert re.fullmatch(r"[0-9a-f]{16}", key.kid)
    assert key.kid in result.stdout
    assert GATEWAY in result.stdout
    assert f"{key_file}.pub" in result.stdout
    # The pair works: what the private key signs, the public key verifies.
    public.verify(key.sign(b"payload"), b"payload")


def test_keys_init_refuses_to_overwrite_an_existing_key(site: Path) -> None:
    key_file = site.parent / "keys" / "gateway.key"
    public_file = site.parent / "keys" / "gateway.key.pub"
    assert invoke("keys", "init", "-c", str(site)).exit_code == 0
    before = key_file.read_bytes(), public_file.read_bytes(), key_file.stat().st_mtime_ns

    again = invoke("keys", "init", "-c", str(site))

    assert again.exit_code == 1
    assert str(key_file) in again.stderr
    assert "exists" in again.stderr
    assert again.stdout == ""
    assert (key_file.read_bytes(), public_file.read_bytes(), key_file.stat().st_mtime_ns) == before
    assert mode_of(key_file) == 0o600


def test_keys_init_refuses_even_when_only_the_private_key_is_there(site: Path) -> None:
    key_file = site.parent / "keys" / "gateway.key"
    key_file.parent.mkdir()
    key_file.write_bytes(b"someone's key\n")
    result = invoke("keys", "init", "-c", str(site))
    assert result.exit_code == 1
    assert key_file.read_bytes() == b"someone's key\n"
    assert not (site.parent / "keys" / "gateway.key.pub").exists()


def test_a_dangling_link_at_the_gateway_key_is_named_alike_by_keys_init_run_and_check(
    site: Path,
) -> None:
    # `run` said "missing (see keys init)" and `keys init` then said "exists": each now names
    # the link and its target, which is not there.
    key_file = site.parent / "keys" / "gateway.key"
    key_file.parent.mkdir()
    target = site.parent / "nowhere"
    key_file.symlink_to(target)
    says = f"{key_file}: key file is a link to {target}, which is not there; remove the link first"

    made = invoke("keys", "init", "-c", str(site))
    assert made.exit_code == 1, made.output
    assert says in made.stderr
    assert "exists;" not in made.stderr
    assert key_file.is_symlink()
    assert not target.exists()
    for command, status in (("run", 2), ("check", 2)):
        result = invoke(command, "-c", str(site))
        assert result.exit_code == status, (command, result.output)
        assert f"{at_gateway_key_line(site)}{says}" in result.stderr, command
        assert f"{key_file}: key file is missing" not in result.stderr, command


def test_keys_init_that_cannot_write_the_key_exits_1_naming_why(site: Path) -> None:
    # A file where the key's folder should be: a mistake to name, not a traceback.
    (site.parent / "keys").write_text("not a folder\n", encoding="utf-8")
    result = invoke("keys", "init", "-c", str(site))
    assert result.exit_code == 1, result.output
    key_file = site.parent / "keys" / "gateway.key"
    assert f"{key_file}: cannot write the key: {site.parent / 'keys'} is not a folder" in (
        result.stderr
    )
    assert isinstance(result.exception, SystemExit), result.exception


def test_keys_init_on_a_bad_config_exits_2_and_creates_nothing(site: Path) -> None:
    site.write_text(site.read_text(encoding="utf-8").replace("poll: 2s", "poll: 0s"), "utf-8")
    result = invoke("keys", "init", "-c", str(site))
    assert result.exit_code == 2
    assert "devices[1].poll" in result.stderr
    assert not (site.parent / "keys").exists()


# --- check --------------------------------------------------------------------------------


def test_check_on_the_copied_example_exits_0(site: Path) -> None:
    result = invoke("check", "-c", str(site))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == f"2 devices, 15 points, gateway {GATEWAY}"
    assert result.stderr == ""
    # check only reads: no key, no outbox appears.
    assert sorted(p.name for p in site.parent.iterdir()) == ["tankfarm.yaml"]


# --- run ----------------------------------------------------------------------------------


def test_run_without_the_gateway_key_exits_2_naming_it(site: Path) -> None:
    collector_key = site.parent / "keys" / "collector.pub"
    collector_key.parent.mkdir()
    collector_key.write_bytes(signing_key_from_seed(bytes(32)).public().public_pem())

    result = invoke("run", "-c", str(site))

    assert result.exit_code == 2
    key_file = site.parent / "keys" / "gateway.key"
    assert f"{at_gateway_key_line(site)}{key_file}: key file is missing" in result.stderr
    assert "keys init" in result.stderr
    assert str(collector_key) not in result.stderr
    assert not (site.parent / "state").exists(), "nothing started"


def test_run_names_every_missing_key_file(site: Path) -> None:
    result = invoke("run", "-c", str(site))
    assert result.exit_code == 2
    assert str(site.parent / "keys" / "gateway.key") in result.stderr
    assert str(site.parent / "keys" / "collector.pub") in result.stderr


def test_run_without_the_collector_key_exits_2_naming_it(site: Path) -> None:
    assert invoke("keys", "init", "-c", str(site)).exit_code == 0
    result = invoke("run", "-c", str(site))
    assert result.exit_code == 2
    assert f"{site.parent / 'keys' / 'collector.pub'}: key file is missing" in result.stderr
    assert "gateway.key:" not in result.stderr


# --- status -------------------------------------------------------------------------------


def test_status_before_any_run_exits_3_with_a_clear_message(site: Path) -> None:
    result = invoke("status", "-c", str(site))
    assert result.exit_code == NOT_RUNNING_EXIT
    outbox = site.parent / "state" / "outbox.db"
    assert "the agent is not running (nobody answers on" in result.stderr
    assert f"outbox       {outbox}: no outbox yet (the agent has not run)" in result.stdout
    assert not outbox.exists(), "status never creates the outbox"


def test_status_reports_the_outbox_after_one_sealed_block(site: Path) -> None:
    config = load_site_config(site)
    key = signing_key_from_seed(bytes(range(32)))
    reading = Reading("T001-LT-01", "WHP-LT", iso_time(1.7e9), 4.2, "m", Quality.GOOD)

    async def seal_one() -> str:
        async with open_outbox(config.outbox.path, identity_of(config), key) as outbox:
            await outbox.seal((reading,), now=1.7e9, clock_synced=True)
            return outbox.epoch

    epoch = asyncio.run(seal_one())

    result = invoke("status", "-c", str(site))

    # No agent runs: the outbox file, the clock and the planned load, with exit status 3.
    assert result.exit_code == NOT_RUNNING_EXIT, result.output
    lines = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in result.stdout.splitlines())
    assert lines["gateway"] == GATEWAY
    assert lines["epoch"] == epoch
    assert lines["last seq"] == "1"
    assert lines["undelivered"] == "1 block, 1 reading"
    assert re.fullmatch(r"\d+ d( \d+ h)? ago", lines["oldest"])  # sealed in 2023
    assert lines["clock"] in {"synchronized", "NOT synchronized"}
    # status reads without writing: the outbox is as it was.
    stats = read_outbox_stats(config.outbox.path)
    assert (stats.epoch, stats.last_seq, stats.undelivered) == (epoch, 1, 1)


def test_status_with_a_file_where_the_outbox_folder_should_be_names_it(site: Path) -> None:
    # It said "the agent is not running" and "no outbox yet (the agent has not run)", exit 3;
    # it now names the folder at outbox.path's line, exit 2, as check and run do.
    (site.parent / "state").write_text("not a folder\n", encoding="utf-8")
    result = invoke("status", "-c", str(site))
    assert result.exit_code == 2, result.output
    assert f"outbox.path: {site.parent / 'state'} is not a folder" in result.stderr
    assert not isinstance(result.exception, OSError), result.exception


def test_status_on_a_socket_path_too_long_for_the_os_names_it(site: Path) -> None:
    # An AF_UNIX address holds 107 bytes: an outbox deep in the tree leaves its socket
    # beyond reach (the agent logs status_socket_failed and runs on); status says so.
    deep = site.parent / ("d" * 60) / ("e" * 60) / "outbox.db"
    text = site.read_text(encoding="utf-8").replace("path: state/outbox.db", f"path: {deep}")
    site.write_text(text, encoding="utf-8")
    result = invoke("status", "-c", str(site))
    assert result.exit_code == FAILED_EXIT, result.output
    assert f"{deep.parent / 'agent.sock'}: cannot connect: AF_UNIX path too long" in result.stderr
    assert not isinstance(result.exception, OSError), result.exception
