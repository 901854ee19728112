"""`collector sites push` and `sites history` at the command line.

`push` refuses a --valid-for no gateway could use, before sending anything. Found by a hostile
tester: `--valid-for 0s` sent a command already expired on arrival and said "pushed", exit 0;
`--valid-for 99999999999d` sent and audited the command, then ended with a ValueError traceback
rendering its not_after (a year past 9999).

`history` shows what a gateway reported in its own words, so those words cannot steer the
operator's terminal (found by the security hostile test).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from collector.config import load_collector_config
from collector.ingest.command_results import result_entry
from collector.storage import open_storage
from collector.storage.capabilities import AuditTrail
from specs.command import CommandResult, Outcome
from tests.support.cli_runs import collector_cli, example_site
from tests.support.collector_client import sim_gateway
from tests.support.collector_env import write_collector_config

GATEWAY = sim_gateway(1)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = write_collector_config(tmp_path, broker_port=1, api_port=1)
    assert collector_cli("keys", "init", "-c", str(path)).exit_code == 0
    public_key = tmp_path / "gw.pub"
    public_key.write_bytes(GATEWAY.key.public().public_pem())
    added = collector_cli(
        "gateways", "add", "-c", str(path), "--gateway", GATEWAY.gateway,
        "--public-key", str(public_key),
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    return path


@pytest.mark.parametrize(
    ("valid_for", "message"),
    [
        ("0s", "must be longer than 0 s"),
        ("0ms", "must be longer than 0 s"),
        ("99999999999d", "must end by 2999-12-31"),
    ],
)
def test_a_valid_for_no_gateway_could_use_is_a_usage_error(
    config: Path, tmp_path: Path, valid_for: str, message: str
) -> None:
    site = example_site(tmp_path)
    result = collector_cli(
        "sites", "push", "-c", str(config), "--gateway", GATEWAY.gateway, str(site),
        "--valid-for", valid_for,
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"Invalid value for --valid-for: {message}" in result.stderr
    history = collector_cli("sites", "history", "-c", str(config), "--gateway", GATEWAY.gateway)
    assert history.exit_code == 0, history.output
    assert history.output.splitlines()[1:] == [], "a push that was not sent was recorded"


async def _record_result(config: Path, result: CommandResult) -> None:
    entry = result_entry(result, GATEWAY.topics.cmd_result, result.encode(), time.time())
    async with open_storage(load_collector_config(config).storage.url) as storage:
        assert isinstance(storage, AuditTrail)
        await storage.record_actions([entry])


def test_a_reported_result_cannot_draw_on_the_operators_terminal(config: Path) -> None:
    """A gateway's signed result is its own text: newlines, ESC and CR in it stay visible.

    Raw, they forged history lines (a newline and a made-up row) or wiped real ones (ESC [1A
    ESC [2K: cursor up, erase the line) on the terminal of whoever reads the history.
    """
    forged = "0123456789abcdef  2026-01-01T00:00:00.000+00:00  cli:root  applied"
    record = _record_result(
        config,
        CommandResult(
            GATEWAY.gateway, "n1", f"v1\n{forged}", Outcome.ROLLED_BACK, time.time(),
            reason="no good reading\r\x1b[1A\x1b[2K\x9b2J\u202e",
        ),
    )  # fmt: skip
    asyncio.run(record)  # not in the test's loop: the command runs one of its own
    history = collector_cli("sites", "history", "-c", str(config), "--gateway", GATEWAY.gateway)
    assert history.exit_code == 0, history.output
    lines = history.stdout.splitlines()
    assert len(lines) == 2, lines  # the header and the one result
    assert not any(char in history.stdout for char in "\r\x1b\x9b\u202e"), repr(history.stdout)
    assert "rolled_back" in lines[1]
    assert "\\n0123456789abcdef" in lines[1]


def test_the_history_of_a_gateway_not_registered_is_a_usage_error(config: Path) -> None:
    """As `export` and `verify` say: before, an empty table and exit 0."""
    history = collector_cli("sites", "history", "-c", str(config), "--gateway", "nosuch")
    assert history.exit_code == 2, history.output
    assert "gateway nosuch is not registered" in history.stderr
    assert history.stdout == ""
