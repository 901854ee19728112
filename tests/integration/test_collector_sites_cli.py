"""`collector sites push` refuses a --valid-for no gateway could use, before sending anything.

Found by a hostile tester: `--valid-for 0s` sent a command already expired on arrival and said
"pushed", exit 0; `--valid-for 99999999999d` sent and audited the command, then ended with a
ValueError traceback rendering its not_after (a year past 9999).
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
