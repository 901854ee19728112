"""Who an admin action's audit row names is the operating system's word, not the caller's.

Found by a hostile tester: the operator of `collector gateways add|revoke`, `tokens add|revoke`
and `sites push` was `getpass.getuser()`, which reads the environment first (LOGNAME, USER,
LNAME, USERNAME): `USER=alice collector gateways revoke ...` was audited as `cli:alice`. The
operator is now the user of the process's real uid, and the user who logged in when that is
someone else (/proc/self/loginuid, which `runuser` and `sudo` keep), so that the README's
`runuser -u ganzhi -- collector ...` still names the person behind it.
"""

from __future__ import annotations

import asyncio
import os
import pwd
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.cli import main
from collector.cli.audited import operator_name
from tests.support.broker import free_port
from tests.support.collector_client import sim_gateway
from tests.support.collector_env import write_collector_config
from tests.support.postgres import sql_rows

GW = sim_gateway(1)
SPOOFED = {"LOGNAME": "mallory", "USER": "mallory", "LNAME": "mallory", "USERNAME": "mallory"}
NOBODY_LOGGED_IN = 4294967295  # (uid_t)-1: what /proc/self/loginuid holds without a login


def _uid_named(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


def test_an_admin_action_names_the_real_user_whatever_the_environment_says(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    config = write_collector_config(tmp_path, broker_port=1, api_port=free_port(), storage_url=url)
    public = tmp_path / "gw.pub"
    public.write_bytes(GW.key.public().public_pem())
    args = ["gateways", "add", "-c", str(config), "--gateway", GW.gateway]
    added = CliRunner(env=SPOOFED).invoke(
        main, [*args, "--public-key", str(public)], catch_exceptions=False
    )
    assert added.exit_code == 0, added.output
    [(source,)] = asyncio.run(sql_rows(url, "SELECT source FROM audit WHERE kind = 'admin'"))
    assert "mallory" not in source
    assert source.startswith(f"cli:{pwd.getpwuid(os.getuid()).pw_name}")


@pytest.mark.parametrize(
    ("uid", "login", "named"),
    [
        (0, None, "cli:root"),
        (0, 0, "cli:root"),
        (0, NOBODY_LOGGED_IN, "cli:root"),
        (_uid_named("daemon"), 0, "cli:daemon (login root)"),
        (0, 987_654, "cli:root (login 987654)"),  # no passwd entry: the number
        (987_654, None, "cli:987654"),
    ],
)
def test_the_operator_is_the_real_user_and_who_logged_in(
    uid: int, login: int | None, named: str
) -> None:
    assert operator_name(uid, login) == named
