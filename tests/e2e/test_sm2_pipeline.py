"""End to end with SM2: `edge-agent keys init` and `collector keys init` make SM2 keys, and
simulator -> agent -> Mosquitto -> collector -> API loses nothing under SM2 signatures.

Only the real commands are used: the gateway's SM2 public key is registered with
`collector gateways add`, the agent verifies the collector's SM2-signed ACKs with the key file
it was given, and `collector verify` re-checks the stored SM2 blocks.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from demo.broker import Broker
from specs.signing import SM2_SM3, load_signing_key, load_verify_key
from tests.e2e.harness import BIN, Site, wait_until

pytestmark = pytest.mark.timeout(240)


def _sm2_site_map(site_map: dict[str, Any]) -> None:
    site_map["signing"]["algorithm"] = SM2_SM3


def _collector(work: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "collector"), *argv, "-c", "collector.yaml"],
        cwd=work,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def sm2_site(tmp_path: Path, broker: Broker) -> Iterator[Site]:
    work = tmp_path / "site"
    work.mkdir()
    site = Site(work=work, broker=broker)
    site.setup(configure=_sm2_site_map)
    # The collector's own key becomes SM2 too: same command, signing.algorithm set.
    for name in ("collector.key", "collector.key.pub"):
        (work / "keys" / name).unlink()
    config_path = work / "collector.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config["signing"]["algorithm"] = SM2_SM3
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    made = _collector(work, "keys", "init")
    assert made.returncode == 0, made.stderr
    site.start_sim()
    site.start_collector()
    yield site
    site.stop_all()


def test_an_sm2_gateway_and_an_sm2_collector_lose_and_duplicate_nothing(sm2_site: Site) -> None:
    keys = sm2_site.work / "keys"
    assert load_signing_key((keys / "gateway.key").read_bytes()).alg == SM2_SM3
    assert load_verify_key((keys / "collector.key.pub").read_bytes()).alg == SM2_SM3

    sm2_site.start_agent()
    wait_until(lambda: sm2_site.sealed_blocks() > 8, 60, "more than 8 blocks")
    sm2_site.drain_and_stop_agent()

    committed, served = sm2_site.outbox_readings(), sm2_site.collector_readings()
    assert sum(committed.values()) > 0
    assert committed == served
    listed = _collector(sm2_site.work, "gateways", "list")
    assert listed.returncode == 0, listed.stderr
    assert SM2_SM3 in listed.stdout
    verified = _collector(sm2_site.work, "verify", "--gateway", sm2_site.gateway)
    assert verified.returncode == 0, verified.stdout + verified.stderr
