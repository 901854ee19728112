"""A gateway's key rotated while everything runs: real `edge-agent run`, `collector serve`.

`edge-agent keys rotate` (a second process, beside the running agent) announces the next key
in a block signed by the current one; the running agent switches once the collector has
stored it, keeps sending, and after a restart runs on the new key. The collector lists both
keys, the new one announced by the old; `collector verify` finds every stored block sound;
every reading the agent sealed is served once. Then the new key is revoked: what the agent
sends is refused and audited, and what was stored stays verifiable.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from edge_agent.shell.keyfile import load_private_key
from hostkit.keyfiles import next_key_path, retired_key_path
from tests.e2e.harness import BIN, Site, wait_until

pytestmark = pytest.mark.timeout(180)


def _run(site: Site, program: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / program), *args], cwd=site.work, capture_output=True, text=True, check=False
    )


def _verify(site: Site) -> dict[str, object]:
    done = _run(site, "collector", "verify", "-c", "collector.yaml", "--gateway", site.gateway)
    assert done.returncode in {0, 1}, done.stderr
    done = _run(
        site, "collector", "verify", "-c", "collector.yaml", "--gateway", site.gateway, "--json"
    )
    report = json.loads(done.stdout)
    assert isinstance(report, dict)
    return report


def _gateway_keys(site: Site) -> list[list[str]]:
    listed = _run(site, "collector", "gateways", "list", "-c", "collector.yaml")
    assert listed.returncode == 0, listed.stderr
    return [line.split() for line in listed.stdout.splitlines()[1:]]


def test_a_key_rotated_under_a_running_agent(site: Site) -> None:
    key_file = site.work / "keys" / "gateway.key"
    old = load_private_key(key_file)
    site.start_agent()
    wait_until(lambda: site.sealed_blocks() >= 3, 30, "blocks sealed under the first key")

    rotated = _run(site, "edge-agent", "keys", "rotate", "-c", "site.yaml")
    assert rotated.returncode == 0, rotated.stderr
    announced = re.search(r"key ([0-9a-f]{16}) at (\S+), announced", rotated.stdout)
    assert announced is not None, rotated.stdout
    new_kid = announced.group(1)
    assert announced.group(2) == str(next_key_path(key_file))

    # The running agent switches once the collector ACKed the announcement.
    wait_until(lambda: _kid(key_file) == new_kid, 30, "the agent switching to the new key")
    assert not next_key_path(key_file).exists()
    assert _kid(retired_key_path(key_file, old.kid)) == old.kid
    sealed = site.sealed_blocks()
    wait_until(lambda: site.sealed_blocks() >= sealed + 3, 30, "blocks under the new key")
    site.stop("agent")
    site.start_agent()  # starts on the new key
    restarted = site.sealed_blocks()
    wait_until(lambda: site.sealed_blocks() >= restarted + 2, 30, "blocks after the restart")
    site.drain_and_stop_agent()

    rows = {row[3]: row for row in _gateway_keys(site)}
    assert set(rows) == {old.kid, new_kid}
    assert rows[new_kid][6] == old.kid  # ANNOUNCED_BY
    report = _verify(site)
    assert report["broken"] == []
    assert report["blocks"] == report["verified"]
    assert site.collector_readings() == site.outbox_readings()

    # Revoked: what the agent sends now is refused, and what is stored stays verifiable.
    revoked = _run(
        site, "collector", "gateways", "revoke", "-c", "collector.yaml",
        "--gateway", site.gateway, "--kid", new_kid,
    )  # fmt: skip
    assert revoked.returncode == 0, revoked.stderr
    stored = report["blocks"]
    site.start_agent()
    wait_until(lambda: site.undelivered() >= 3, 30, "blocks the collector does not ACK")
    site.stop("agent")
    after = _verify(site)
    assert (after["blocks"], after["verified"], after["broken"]) == (stored, stored, [])
    audit = _run(site, "collector", "audit", "verify", "-c", "collector.yaml")
    assert audit.returncode == 0, audit.stdout + audit.stderr


def _kid(path: Path) -> str | None:
    try:
        return load_private_key(path).kid
    except OSError:
        return None
