"""Neither program starts on a private key that the group or others may read.

A key file copied with `cp` or unpacked from an archive easily ends up 0644: then every local
account can sign blocks as the gateway (or ACKs and commands as the collector). `run`/`serve`
and `check` refuse it, naming the file and the fix.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import Result

from tests.support.broker import free_port
from tests.support.cli_runs import (
    agent_cli,
    as_a_user_kept_out_of,
    collector_cli,
    folder_open_to_all,
    keyed_example_site,
)
from tests.support.collector_env import write_collector_config
from tests.support.config_files import at_gateway_key_line, line_of

AGENT_MAIN = "from edge_agent.cli import main; main()"
EXPOSED = (0o640, 0o604, 0o644, 0o660, 0o606)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """The example site map in tmp, with its gateway key made (0600) and a collector key."""
    return keyed_example_site(tmp_path)


@pytest.fixture
def collector_config(tmp_path: Path) -> Path:
    """A collector.yaml with its key made (0600); its broker and storage are never reached."""
    config = write_collector_config(tmp_path, broker_port=1, api_port=free_port())
    assert collector_cli("keys", "init", "-c", str(config)).exit_code == 0
    return config


def _refused(result: Result, key_file: Path, mode: int) -> None:
    assert result.exit_code == 2, result.output
    assert str(key_file) in result.stderr
    assert f"{mode:04o}" in result.stderr
    assert f"chmod 600 {key_file}" in result.stderr


@pytest.mark.timeout(30)  # without the refusal `run` would run on: fail, never hang
@pytest.mark.parametrize("mode", EXPOSED)
@pytest.mark.parametrize("command", ["run", "check"])
def test_the_agent_refuses_a_gateway_key_others_may_read(
    site: Path, command: str, mode: int
) -> None:
    key_file = site.parent / "keys" / "gateway.key"
    key_file.chmod(mode)
    result = agent_cli(command, "-c", str(site))
    _refused(result, key_file, mode)
    assert f"{at_gateway_key_line(site)}{key_file}: private key has mode {mode:04o}" in (
        result.stderr
    )


def test_the_agent_checks_a_0600_or_0400_key_happily(site: Path) -> None:
    key_file = site.parent / "keys" / "gateway.key"
    assert agent_cli("check", "-c", str(site)).exit_code == 0
    key_file.chmod(0o400)
    assert agent_cli("check", "-c", str(site)).exit_code == 0


@pytest.mark.timeout(30)
@pytest.mark.parametrize("problem", ["a folder", "a file as its folder"])
@pytest.mark.parametrize("command", ["run", "check"])
def test_the_agent_refuses_a_gateway_key_that_is_no_file(
    site: Path, command: str, problem: str
) -> None:
    """Not a mode to chmod, nor a traceback: what is wrong with the path, exit 2."""
    key_file = site.parent / "keys" / "gateway.key"
    shutil.rmtree(key_file.parent)
    if problem == "a folder":
        key_file.mkdir(parents=True)
        says = f"{at_gateway_key_line(site)}{key_file}: a folder, not a key file"
    else:
        key_file.parent.write_text("not a folder\n", encoding="utf-8")
        says = f"{at_gateway_key_line(site)}{key_file}: cannot read: Not a directory"
    result = agent_cli(command, "-c", str(site))
    assert result.exit_code == 2, result.output
    assert says in result.stderr
    assert "chmod" not in result.stderr
    assert isinstance(result.exception, SystemExit), result.exception


@pytest.mark.parametrize("problem", ["not a key", "another algorithm"])
def test_check_refuses_a_gateway_key_run_would_refuse(site: Path, problem: str) -> None:
    """`check` passed these and `run` then refused them: check says it first, as run does."""
    key_file = site.parent / "keys" / "gateway.key"
    if problem == "not a key":
        key_file.write_bytes(b"garbage\n")  # still 0600
        says = f"{at_gateway_key_line(site)}{key_file}: not a private key PEM"
    else:
        text = site.read_text(encoding="utf-8")
        site.write_text(text.replace("algorithm: ed25519", "algorithm: sm2-sm3", 1), "utf-8")
        says = (
            f"{at_gateway_key_line(site)}{key_file}:"
            " the key is ed25519 but signing.algorithm is sm2-sm3"
        )
    result = agent_cli("check", "-c", str(site))
    assert result.exit_code == 2, result.output
    assert says in result.stderr


def _second_problem(site: Path, problem: str) -> str:
    """Make `problem` beside the gateway key's; how its refusal line begins and goes on."""
    text = site.read_text(encoding="utf-8")
    collector_key = site.parent / "keys" / "collector.pub"
    at_collector_key = f"{site}:{line_of(text, '  collector_key:')}: uplink.collector_key: "
    if problem == "no collector key":
        collector_key.unlink()
        return f"{at_collector_key}{collector_key}: key file is missing"
    if problem == "a collector key that is no key":
        collector_key.write_bytes(b"garbage\n")
        return f"{at_collector_key}{collector_key}: "
    outbox = site.parent / "state" / "outbox.db"
    outbox.mkdir(parents=True)
    return f"{site}:{line_of(text, '  path:')}: outbox.path: {outbox} is a folder, not a file"


@pytest.mark.timeout(30)  # without the refusal `run` would run on: fail, never hang
@pytest.mark.parametrize("gateway_key", ["exposed", "not a key"])
@pytest.mark.parametrize(
    ("command", "problem"),
    [
        ("run", "no collector key"),
        ("run", "a collector key that is no key"),
        ("run", "an outbox path that is a folder"),
        ("check", "a collector key that is no key"),
        ("check", "an outbox path that is a folder"),
        ("backfill", "an outbox path that is a folder"),
    ],
)
def test_every_start_up_problem_is_named_at_once_with_the_gateway_keys(
    site: Path, command: str, problem: str, gateway_key: str
) -> None:
    """`run` (and `backfill`) stopped at a refused gateway key and named nothing else: fixing
    it, the user met the next problem only at the next start. Now each is named at its line,
    then 2."""
    key_file = site.parent / "keys" / "gateway.key"
    if gateway_key == "exposed":
        key_file.chmod(0o644)
        key_says = f"{at_gateway_key_line(site)}{key_file}: private key has mode 0644"
    else:
        key_file.write_bytes(b"garbage\n")  # still 0600
        key_says = f"{at_gateway_key_line(site)}{key_file}: not a private key PEM"
    other_says = _second_problem(site, problem)
    args = [command]
    if command == "backfill":  # an instrument's log to import: never read, as nothing starts
        log = site.parent / "log.csv"
        log.write_text("point,t,value\n", encoding="utf-8")
        args += ["--csv", str(log)]
    result = agent_cli(*args, "-c", str(site))
    assert result.exit_code == 2, result.output
    assert key_says in result.stderr
    assert other_says in result.stderr
    assert isinstance(result.exception, SystemExit), result.exception
    assert not (site.parent / "state" / "outbox.db.agent-lock").exists(), "nothing started"


@pytest.mark.timeout(60)
def test_check_by_a_user_kept_out_of_the_keys_folder_names_each_key() -> None:
    """As README installs it, /etc/ganzhi/keys (0700, the service's) holds the gateway key and
    the collector's public key. `check` run by another user named the gateway key and stopped
    (exit 2); once it named every problem, the collector key's existence check raised a
    PermissionError traceback, as the TLS files' did. Each is named at its line, exit 2."""
    with folder_open_to_all() as folder:
        site = keyed_example_site(folder)
        text = site.read_text(encoding="utf-8").replace("mqtt://", "mqtts://")
        site.write_text(
            text.replace("  collector_key:", "  tls: {ca: keys/ca.crt}\n  collector_key:")
        )
        keys = folder / "keys"
        prefix = as_a_user_kept_out_of(keys, folder)
        done = subprocess.run(
            [*prefix, sys.executable, "-c", AGENT_MAIN, "check", "-c", str(site)],
            cwd=folder,
            capture_output=True,
            text=True,
            check=False,
            timeout=45,
        )
        at_gateway_key = at_gateway_key_line(site)
        text = site.read_text(encoding="utf-8")
        at_collector_key = f"{site}:{line_of(text, '  collector_key:')}: uplink.collector_key: "
        at_ca = f"{site}:{line_of(text, '  tls:')}: uplink.tls.ca: "
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 2, done.stderr
    gateway_key, collector_key = keys / "gateway.key", keys / "collector.pub"
    assert f"{at_gateway_key}{gateway_key}: cannot read: Permission denied" in done.stderr
    assert f"{at_collector_key}{collector_key}: cannot read: Permission denied" in done.stderr
    assert at_ca in done.stderr
    assert "Permission denied" in done.stderr.split(at_ca)[1].splitlines()[0]


def test_the_agent_refuses_a_tls_client_key_others_may_read(site: Path) -> None:
    tls_key = site.parent / "keys" / "client.key"
    tls_key.write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    tls_key.chmod(0o644)
    text = site.read_text(encoding="utf-8").replace("mqtt://", "mqtts://")
    text = text.replace(
        "  collector_key:", "  tls: {cert: keys/client.crt, key: keys/client.key}\n  collector_key:"
    )
    site.write_text(text, encoding="utf-8")
    _refused(agent_cli("check", "-c", str(site)), tls_key, 0o644)


@pytest.mark.timeout(30)  # without the refusal `serve` would run on: fail, never hang
@pytest.mark.parametrize("mode", EXPOSED)
@pytest.mark.parametrize("command", ["serve", "check"])
def test_the_collector_refuses_its_key_when_others_may_read_it(
    collector_config: Path, command: str, mode: int
) -> None:
    key_file = collector_config.parent / "keys" / "collector.key"
    key_file.chmod(mode)
    _refused(collector_cli(command, "-c", str(collector_config)), key_file, mode)


def test_collector_check_passes_a_sound_config_and_names_its_key(collector_config: Path) -> None:
    result = collector_cli("check", "-c", str(collector_config))
    assert result.exit_code == 0, result.output
    assert str(collector_config.parent / "keys" / "collector.key") in result.stdout


def test_collector_check_names_a_missing_key(tmp_path: Path) -> None:
    config = write_collector_config(tmp_path, broker_port=1, api_port=free_port())
    result = collector_cli("check", "-c", str(config))
    assert result.exit_code == 2
    assert "collector keys init" in result.stderr
