"""The agent's and the collector's commands run in-process (click's runner), and the example site.

The security tests call `edge-agent` and `collector` as an operator would, but without a
process each: `agent_cli(...)` and `collector_cli(...)` return click's `Result` (exit code, stdout,
stderr). The collector logs JSON here, as it does under systemd. `json_output` runs a command
as a process instead and reads the JSON it prints.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from click.testing import CliRunner, Result

from collector.cli import main as collector_main
from edge_agent.cli import main as agent_main
from specs.signing import generate_signing_key

EXAMPLE_SITE = Path(__file__).resolve().parents[2] / "configs" / "tankfarm.yaml"


def agent_cli(*args: str) -> Result:
    """`edge-agent ARGS...`."""
    return CliRunner().invoke(agent_main, list(args))


def collector_cli(*args: str) -> Result:
    """`collector --log-format json ARGS...`."""
    return CliRunner().invoke(collector_main, ["--log-format", "json", *args])


def example_site(folder: Path) -> Path:
    """A copy of configs/tankfarm.yaml in `folder` (its key paths are relative to it)."""
    copy = folder / "tankfarm.yaml"
    shutil.copyfile(EXAMPLE_SITE, copy)
    return copy


def keyed_example_site(folder: Path) -> Path:
    """`example_site` with its gateway key made (0600) and a collector public key beside it."""
    copy = example_site(folder)
    assert agent_cli("keys", "init", "-c", str(copy)).exit_code == 0
    collector_key = generate_signing_key().public().public_pem()
    (folder / "keys" / "collector.pub").write_bytes(collector_key)
    return copy


def json_output(
    argv: Sequence[str], *, cwd: Path, timeout: float, env: Mapping[str, str] | None = None
) -> object:
    """What `argv`, run in `cwd` to its end, printed as JSON; the test fails unless it exits 0."""
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=timeout
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
