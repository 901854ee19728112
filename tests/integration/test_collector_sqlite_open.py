"""A SQLite database that cannot be opened ends a command with one line, and no thread's traceback.

Found by a hostile tester: `storage.url` naming a folder (`sqlite:///state`) or `/` printed
"Error: cannot open database ...: unable to open database file", then, in about half the
runs, "Exception in thread ... RuntimeError: Event loop is closed" with two tracebacks:
aiosqlite 0.22 leaves the thread of a connection that could not open with its stop queued
on a future nobody awaits, and the command's event loop was closed by the time it ran.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from tests.support.cli_runs import in_a_process
from tests.support.collector_env import write_collector_config

RUNS = 6  # the thread lost the race in 3 of 5 runs: 6 runs catch it all but always


def test_a_folder_as_the_database_is_one_line_of_error(tmp_path: Path) -> None:
    config = write_collector_config(
        tmp_path, broker_port=1, api_port=1, storage_url="sqlite:///state"
    )
    (tmp_path / "state").mkdir()
    for _ in range(RUNS):
        done = in_a_process("collector", "gateways", "list", "-c", str(config), cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        assert done.stderr == (
            f"Error: cannot open database {tmp_path / 'state'}: unable to open database file\n"
        )


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may write in others' folders")
def test_root_makes_no_database_in_the_service_users_folder(tmp_path: Path) -> None:
    """`collector gateways add` (or any command) run as root before the service's first start
    made `collector.db` root's in the service's state folder: the service, as its user, then
    failed in SQLite ('attempt to write a readonly database'). Now refused, nothing made."""
    config = write_collector_config(
        tmp_path, broker_port=1, api_port=1, storage_url="sqlite:///state/collector.db"
    )
    state = tmp_path / "state"
    state.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(state, nobody.pw_uid, nobody.pw_gid)
    done = in_a_process("collector", "gateways", "list", "-c", str(config), cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr == (
        f"Error: cannot open database {state / 'collector.db'}: {state} belongs to nobody, not"
        " root: run this as nobody (runuser -u nobody -- ...)\n"
    )
    assert list(state.iterdir()) == []
