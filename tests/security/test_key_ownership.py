"""Keys made by hand as root in the service user's keys folder.

`keys init` (and `keys rotate`, which stages `<key>.next` the same way) run as root in a folder
the service's user owns made the key root's, mode 0600: the service, as its user, could not
read it (`run` failed at start, or at the switch to the staged key). Like every file a command
would make there as root (hostkit.ownership), it is refused, naming the user to run it as.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from tests.support.cli_runs import agent_cli, collector_cli, example_site
from tests.support.collector_env import cli_config

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only root may write in others' folders")


@pytest.mark.parametrize("program", ["edge-agent", "collector"])
@pytest.mark.parametrize("command", [["keys", "init"], ["keys", "rotate"]])
def test_root_makes_no_key_in_the_service_users_keys_folder(
    tmp_path: Path, program: str, command: list[str]
) -> None:
    config = example_site(tmp_path) if program == "edge-agent" else cli_config(tmp_path)
    cli = agent_cli if program == "edge-agent" else collector_cli
    keys = tmp_path / "keys"
    if command == ["keys", "rotate"]:  # rotating needs a key: made before the folder is given
        assert cli("keys", "init", "-c", str(config)).exit_code == 0
    before = sorted(keys.iterdir()) if keys.exists() else []
    keys.mkdir(exist_ok=True)
    nobody = pwd.getpwnam("nobody")
    os.chown(keys, nobody.pw_uid, nobody.pw_gid)
    result = cli(*command, "-c", str(config))
    # The agent's rotate names key problems as map problems, 2; every other command says 1.
    agent_rotate = program == "edge-agent" and command == ["keys", "rotate"]
    assert result.exit_code == (2 if agent_rotate else 1), result.output
    assert (
        f"{keys} belongs to nobody, not root: run this as nobody (runuser -u nobody -- ...)"
        in result.output
    )
    assert sorted(keys.iterdir()) == before, "root made a key in the service user's folder"


def test_root_rotates_no_gateway_key_into_the_service_users_outbox(tmp_path: Path) -> None:
    """`edge-agent keys rotate` seals its announcement into the outbox: as root in the service
    user's state folder it is refused at `outbox.path`, as `run` and `backfill` are."""
    site = example_site(tmp_path)
    assert agent_cli("keys", "init", "-c", str(site)).exit_code == 0
    state = tmp_path / "state"
    state.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(state, nobody.pw_uid, nobody.pw_gid)
    line = 1 + site.read_text(encoding="utf-8").splitlines().index("  path: state/outbox.db")
    result = agent_cli("keys", "rotate", "-c", str(site))
    assert result.exit_code == 2, result.output
    assert f"{site}:{line}: outbox.path: {state} belongs to nobody, not root" in result.stderr
    assert list(state.iterdir()) == []
    assert not (tmp_path / "keys" / "gateway.key.next").exists()
