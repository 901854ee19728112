"""The whole pipe over mutual TLS: simulator -> agent -> mqtts broker -> collector -> API.

Everything is set up with the real commands a province admin runs (DESIGN section 11):
`collector certs ca init`, `collector certs issue --gateway G`, `collector broker-config`,
then Mosquitto runs the written config and both programs connect with their certificates.
The oracle is the harness's: every reading the agent committed is served exactly once.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.pki.certificates import COLLECTOR_IDENTITY
from tests.e2e.harness import BIN, Site, wait_until
from tests.support.broker import free_port
from tests.support.tls_broker import ConfiguredBroker

pytestmark = pytest.mark.timeout(120)


def collector(work: Path, *args: str) -> None:
    done = subprocess.run(
        [str(BIN / "collector"), *args], cwd=work, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def use_gateway_certificate(site_map: dict[str, Any]) -> None:
    gateway = site_map["site"]["gateway"]
    site_map["uplink"]["tls"] = {
        "ca": "tls/ca.crt",
        "cert": f"tls/{gateway}.crt",
        "key": f"tls/{gateway}.key",
    }


@pytest.fixture
def mtls_site(tmp_path: Path) -> Iterator[Site]:
    """A site whose agent and collector reach the broker only through their certificates."""
    work = tmp_path / "site"
    work.mkdir()
    port = free_port()
    broker = ConfiguredBroker(port=port, workdir=work / "broker")
    site = Site(work=work, broker=broker)
    site.setup(configure=use_gateway_certificate)  # the site map says mqtts://127.0.0.1:port
    config_path = work / "collector.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    assert config["broker"] == f"mqtts://127.0.0.1:{port}"
    config["certs"] = {"ca_dir": "pki/ca"}
    config["broker_tls"] = {
        "ca": "broker/ca.crt",
        "cert": f"broker/{COLLECTOR_IDENTITY}.crt",
        "key": f"broker/{COLLECTOR_IDENTITY}.key",
    }
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    collector(work, "certs", "ca", "init", "-c", "collector.yaml")
    collector(
        work, "certs", "issue", "-c", "collector.yaml", "--gateway", site.gateway, "--out", "tls"
    )
    collector(
        work,
        "broker-config",
        "-c",
        "collector.yaml",
        "--listen",
        f"127.0.0.1:{port}",
        "--out",
        "broker",
    )
    broker.start()
    try:
        site.start_sim()
        site.start_collector()
        yield site
    finally:
        site.stop_all()
        broker.stop()


def test_every_reading_crosses_the_mtls_broker_exactly_once(mtls_site: Site) -> None:
    site = mtls_site
    site.start_agent()
    wait_until(lambda: site.sealed_blocks() > 5, 30, "more than 5 sealed blocks")
    site.drain_and_stop_agent()
    committed = site.outbox_readings()
    assert sum(committed.values()) > 0
    assert site.collector_readings() == committed
    # Both connected as their certificates' names: the ACL's gateway and collector identities.
    log = (site.broker.workdir / "mosquitto.log").read_text(encoding="utf-8", errors="replace")
    assert f"u'{site.gateway}'" in log
    assert f"u'{COLLECTOR_IDENTITY}'" in log
    assert "Denied" not in log
