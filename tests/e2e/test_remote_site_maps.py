"""Remote device maps (DESIGN section 11, Commands) through the real programs.

Simulator, Mosquitto, `collector serve` and `edge-agent run` as processes; maps pushed with
`collector sites push`, results read back with `collector sites history`. The probation window
(`commands.rollback_after`) is 3 s here instead of the default minute.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import yaml

from specs.command import SiteMapCommand, map_version
from specs.signing import generate_signing_key, load_signing_key, signature_properties
from specs.topics import GatewayTopics
from tests.e2e.harness import BIN, Site, wait_until
from tests.support.broker import free_port
from tests.support.cli_runs import collector_cli
from tests.support.collector_client import publish_properties
from tests.support.logging_state import logging_restored

pytestmark = pytest.mark.timeout(120)

_NEW_POINT = "T001-LT-02"
_BOTH_STORAGES = pytest.mark.parametrize(
    "site_storage_url", ["sqlite", "postgresql"], indirect=True
)


@pytest.fixture
def site_storage_url(request: pytest.FixtureRequest) -> str:
    """SQLite, unless a test asks for PostgreSQL too (the history lives in the audit chain)."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return "sqlite:///state/collector.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


def _site_map(site: Site) -> dict[str, Any]:
    loaded = yaml.safe_load((site.work / "site.yaml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _start(site: Site) -> None:
    """Start the agent with a 3 s probation and wait until the collector has its readings."""
    site_map = _site_map(site)
    site_map["commands"] = {"rollback_after": "3s"}
    (site.work / "site.yaml").write_text(yaml.safe_dump(site_map), encoding="utf-8")
    site.start_agent()
    wait_until(lambda: bool(site.collector_readings()), 30, "readings at the collector")


def _write(site: Site, name: str, site_map: dict[str, Any]) -> Path:
    path = site.work / name
    path.write_text(yaml.safe_dump(site_map), encoding="utf-8")
    return path


def _collector(site: Site, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "collector"), *argv], cwd=site.work, capture_output=True, text=True, check=False
    )


def _push(site: Site, path: Path) -> dict[str, str]:
    done = _collector(
        site,
        "sites",
        "push",
        "-c",
        "collector.yaml",
        "--gateway",
        site.gateway,
        "--json",
        str(path),
    )
    assert done.returncode == 0, done.stderr
    pushed = json.loads(done.stdout)
    assert pushed["version"] == map_version(path.read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in pushed.items()}


def _history(site: Site) -> list[dict[str, Any]]:
    """`collector sites history --json`, in-process (click's runner): the tests poll it until
    a result arrives, and a process each poll cost 2-4 s of interpreter start-up under load.
    The same command runs as a process for the table a person reads (the good map's test)."""
    config = str(site.work / "collector.yaml")
    with logging_restored():
        done = collector_cli("sites", "history", "-c", config, "--gateway", site.gateway, "--json")
    assert done.exit_code == 0, done.output
    pushes = json.loads(done.stdout)["pushes"]
    assert isinstance(pushes, list)
    return pushes


def _result_of(site: Site, nonce: str, timeout: float = 30) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def reported() -> bool:
        for entry in _history(site):
            if entry["nonce"] == nonce and entry["result"] != "pending":
                found.update(entry)
                return True
        return False

    wait_until(reported, timeout, f"the result of command {nonce}")
    return found


# A map that is rolled back takes the agent through two restarts before its result goes: it
# stops, `edge-agent run` starts on the pushed map and execs the runner, which fails to start
# or reads nothing good; both start again on the previous map; the result is sent within 2 s
# of the connect. Each step is an interpreter start or two, up to 9 s each at load 7-14: from
# the map replaced to the result sent took 6.5-18.5 s at load 7-9 and up to 29.3 s at load
# 10-14, and one 30 s bound on the push's whole trip failed at load 14. Each step is waited
# for in the agent's log with a bound of its own, so a step that never comes names itself.
_ROLLBACK_STEPS = (
    ("agent_restarting_on_new_map", 1, "the restart onto the pushed map"),
    ("site_map_rolled_back", 1, "the rollback"),
    ("agent_restarting_on_new_map", 2, "the restart onto the previous map"),
    ("command_result_sent", 1, "the rollback's result sent"),
)


def _rolled_back_step_by_step(site: Site) -> None:
    for event, times, what in _ROLLBACK_STEPS:
        _logged(site, event, times, what)


def _logged(site: Site, event: str, times: int, what: str) -> None:
    """Wait (30 s at most) until the agent has logged `event` `times` times."""
    wait_until(lambda: site.log("agent").count(f'"event": "{event}"') >= times, 30, what)


def _points(site: Site) -> set[str]:
    return {point for point, *_ in site.collector_readings()}


@_BOTH_STORAGES
def test_a_good_map_is_applied_and_its_new_point_reaches_the_collector(site: Site) -> None:
    _start(site)
    before = (site.work / "site.yaml").read_text(encoding="utf-8")
    new_map = _site_map(site)
    plc = next(d for d in new_map["devices"] if d["id"] == "tank-plc")
    plc["points"].append(
        {
            "point": _NEW_POINT,
            "quota": "WHP-LT",
            "address": {"table": "holding", "start": 0, "type": "float32"},
        }
    )
    pushed = _push(site, _write(site, "new-site.yaml", new_map))

    wait_until(lambda: _NEW_POINT in _points(site), 30, "the new point's readings")
    entry = _result_of(site, pushed["nonce"])
    assert entry["result"] == "applied"
    assert entry["version"] == pushed["version"]
    assert entry["by"].startswith("cli:")
    assert entry["pushed_at"] is not None
    # Replaced in one step, the old map kept beside it.
    assert (site.work / "site.yaml").read_text(encoding="utf-8") == (
        site.work / "new-site.yaml"
    ).read_text(encoding="utf-8")
    assert (site.work / "site.yaml.prev").read_text(encoding="utf-8") == before
    assert site.alive("agent")
    # The table a person reads.
    table = _collector(site, "sites", "history", "-c", "collector.yaml", "--gateway", site.gateway)
    assert table.returncode == 0
    header, row = table.stdout.splitlines()
    assert header.split() == ["VERSION", "PUSHED", "BY", "RESULT", "DETAIL"]
    assert row.split()[0] == pushed["version"]
    assert "applied" in row.split()


def test_a_broken_map_is_rejected_with_its_file_line_errors(site: Site) -> None:
    _start(site)
    before = (site.work / "site.yaml").read_text(encoding="utf-8")
    broken = _site_map(site)
    broken["devices"][0]["pol"] = "1s"  # a typo: unknown key
    path = _write(site, "broken.yaml", broken)
    line = next(
        number
        for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if text.strip().startswith("pol:")
    )
    pushed = _push(site, path)

    entry = _result_of(site, pushed["nonce"])
    assert entry["result"] == "rejected"
    (reported,) = entry["results"]
    assert any(
        error.startswith(f"pushed:{pushed['version']}:{line}: devices[0].pol:")
        for error in reported["errors"]
    ), reported["errors"]
    assert (site.work / "site.yaml").read_text(encoding="utf-8") == before
    assert "site_map_rejected" in site.log("agent")


def _pushed_and_rolled_back(site: Site, name: str, site_map: dict[str, Any], why: str) -> None:
    """Push `site_map` (written as `name`): the agent rolls it back step by step and reports
    `why` in the result's reason; its site.yaml is as before."""
    before = (site.work / "site.yaml").read_text(encoding="utf-8")
    pushed = _push(site, _write(site, name, site_map))
    _rolled_back_step_by_step(site)
    entry = _result_of(site, pushed["nonce"])
    assert entry["result"] == "rolled_back"
    assert why in entry["results"][-1]["reason"]
    assert (site.work / "site.yaml").read_text(encoding="utf-8") == before


def test_a_map_that_reads_nothing_good_is_rolled_back(site: Site) -> None:
    _start(site)
    dead = _site_map(site)
    nowhere = free_port()
    for device in dead["devices"]:
        device["port"] = nowhere
    _pushed_and_rolled_back(site, "dead.yaml", dead, "rollback_after")
    # The previous map runs again: fresh readings arrive after the rollback.
    _readings_arrive_from_now(site, "readings after the rollback")
    # Onto the dead map, and back: `edge-agent run` logs each restart once it checked the map
    # again, which may be after the stop's last readings arrived.
    wait_until(
        lambda: site.log("agent").count("agent_restarting_on_new_map") == 2,
        30,
        "the restart onto the previous map",
    )
    assert "site_map_rolled_back" in site.log("agent")


def test_a_map_the_agent_cannot_start_on_is_rolled_back(site: Site) -> None:
    _start(site)
    taken = socket.create_server(("127.0.0.1", 0))  # the port the pushed map wants
    with taken:
        port = taken.getsockname()[1]
        unstartable = _site_map(site)
        unstartable["metrics"] = {"listen": f"127.0.0.1:{port}"}
        _pushed_and_rolled_back(site, "unstartable.yaml", unstartable, "failed to start on it")
    assert site.alive("agent")
    _readings_arrive_from_now(site, "readings on the previous map")


def _readings_arrive_from_now(site: Site, what: str) -> None:
    """Wait (30 s at most) for the collector to serve a reading taken from now on."""
    since = time.time()
    wait_until(
        lambda: (
            site.api("/v1/readings", gateway=site.gateway, **{"from": _iso(since)})["items"] != []
        ),
        30,
        what,
    )


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


async def _publish(site: Site, payload: bytes, properties: list[tuple[str, str]]) -> None:
    site_map = _site_map(site)["site"]
    topics = GatewayTopics(str(site_map["district"]), site_map["enterprise"], site.gateway)
    async with aiomqtt.Client(
        "127.0.0.1", site.broker.port, identifier=f"attacker-{time.monotonic_ns()}",
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:  # fmt: skip
        await client.publish(topics.cmd, payload, qos=1, properties=publish_properties(properties))


@_BOTH_STORAGES
def test_replayed_forged_and_expired_commands_are_ignored_and_audited(site: Site) -> None:
    _start(site)
    collector_key = load_signing_key((site.work / "keys" / "collector.key").read_bytes())
    same_map = (site.work / "site.yaml").read_text(encoding="utf-8")
    now = time.time()

    def command(nonce: str, not_after: float) -> SiteMapCommand:
        return SiteMapCommand(site.gateway, nonce, now, not_after, "test", same_map)

    genuine = command("a1" * 16, now + 600).encode()
    genuine_signature = signature_properties(collector_key.sign(genuine))
    asyncio.run(_publish(site, genuine, genuine_signature))
    wait_until(
        lambda: any(e["nonce"] == "a1" * 16 and e["result"] == "applied" for e in _history(site)),
        30,
        "the genuine command applied",
    )

    asyncio.run(_publish(site, genuine, genuine_signature))  # the same bytes again
    forged = command("b2" * 16, now + 600).encode()
    forger = generate_signing_key()
    asyncio.run(_publish(site, forged, signature_properties(forger.sign(forged))))
    expired = command("c3" * 16, now - 10).encode()
    asyncio.run(_publish(site, expired, signature_properties(collector_key.sign(expired))))

    def ignored() -> dict[str, str]:
        reasons: dict[str, str] = {}
        for entry in _history(site):
            for reported in entry["results"]:
                if reported["result"] == "ignored":
                    reasons[str(reported["reason"])] = str(reported["nonce"])
        return reasons

    wait_until(lambda: len(ignored()) == 3, 30, "three ignored commands audited")
    assert ignored() == {"replayed": "a1" * 16, "unknown_key": "", "expired": "c3" * 16}
    (genuine_entry,) = [e for e in _history(site) if e["nonce"] == "a1" * 16]
    assert genuine_entry["result"] == "applied"  # the replay undid nothing
    log = site.log("agent")
    for reason in ("replayed", "unknown_key", "expired"):
        assert f'"reason": "{reason}"' in log, reason
    # Applied once: one restart, for the genuine command only.
    assert log.count("agent_restarting_on_new_map") == 1
