"""A stopped agent says so itself: the retained status turns offline at a clean stop.

Found on main: a SIGTERM left the last heartbeat (`online: true`) retained, because a clean
DISCONNECT fires no last will, and the gateway looked online for another presence window.
The heartbeat also names the agent's version and the device map it runs.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiomqtt
import pytest

from edge_agent.config import load_site_config
from edge_agent.core.plan_compile import config_fingerprint
from specs.signing import load_verify_key, signature_from_properties
from specs.status import GatewayStatus, decode_status
from specs.topics import GatewayTopics
from tests.e2e.harness import Site, wait_until

pytestmark = pytest.mark.timeout(120)


async def _retained_status(port: int, topic: str) -> tuple[bytes, list[tuple[str, str]]]:
    """The status message the broker holds retained for `topic`, read by a new subscriber."""
    async with aiomqtt.Client(
        "127.0.0.1", port, identifier=f"reader-{time.monotonic_ns()}",
        protocol=aiomqtt.ProtocolVersion.V5,
    ) as client:  # fmt: skip
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(10):
            async for message in client.messages:
                found = getattr(message.properties, "UserProperty", None) or []
                return bytes(message.payload), [(str(k), str(v)) for k, v in found]
    raise AssertionError("unreachable: the loop returns or times out")


def _verified(site: Site, payload: bytes, properties: list[tuple[str, str]]) -> GatewayStatus:
    key = load_verify_key((site.work / "keys" / "gateway.key.pub").read_bytes())
    key.verify(signature_from_properties(properties), payload)  # raises unless the agent signed
    return decode_status(payload)


def _online(site: Site) -> bool:
    items = site.api("/v1/gateways")["items"]
    assert isinstance(items, list)
    (gateway,) = [g for g in items if g["gateway"] == site.gateway]
    return bool(gateway["online"])


def test_a_clean_stop_leaves_a_signed_offline_status_retained(site: Site) -> None:
    config = load_site_config(Path(site.work / "site.yaml"))
    topic = GatewayTopics(config.site.district, config.site.enterprise, site.gateway).status
    site.start_agent()
    wait_until(lambda: _online(site), 30, "the collector sees the gateway online")
    heartbeat = _verified(site, *asyncio.run(_retained_status(site.broker.port, topic)))
    assert heartbeat.online
    assert heartbeat.version is not None
    assert heartbeat.config == config_fingerprint(config)

    stopped_at = time.time()
    site.stop("agent")
    assert "said_offline=True" in site.log("agent") or '"said_offline": true' in site.log("agent")
    offline = _verified(site, *asyncio.run(_retained_status(site.broker.port, topic)))
    assert not offline.online
    assert offline.t >= stopped_at
    wait_until(lambda: not _online(site), 10, "the collector sees the gateway offline")
