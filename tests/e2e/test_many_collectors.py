"""Two `collector serve` processes on one PostgreSQL share the gateway's blocks (DESIGN 9).

A real agent polls the simulator and seals blocks; the broker hands them round robin to two
collectors in the shared subscription `$share/gz-collectors/...`. One collector is SIGKILLed
in the middle of ingest. The oracle: every reading the agent sealed is stored exactly once
(the multiset of outbox readings equals what the API serves), every block is released by a
collector-signed ACK the agent checked (nothing left undelivered), and both collectors
stored blocks of the one gateway (any collector stores and ACKs any gateway).
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.broker import Broker
from tests.e2e.harness import Site, wait_until

pytestmark = pytest.mark.timeout(300)


def _short_ack_timeout(site_map: dict[str, Any]) -> None:
    # Blocks in flight to the killed collector are resent after the ACK timeout.
    site_map["uplink"]["ack_timeout"] = "4s"


@pytest.fixture
def shared_site(tmp_path: Path, broker: Broker, postgres_url: str) -> Iterator[Site]:
    """A site whose collector database is PostgreSQL; collectors are started by the test."""
    work = tmp_path / "site"
    work.mkdir()
    site = Site(work=work, broker=broker, storage_url=postgres_url)
    site.setup(configure=_short_ack_timeout)
    site.start_sim()
    yield site
    site.stop_all()


def _stored_blocks(site: Site, name: str) -> set[tuple[str, int]]:
    """(epoch, seq) of the blocks collector `name` logged as stored (--debug)."""
    found: set[tuple[str, int]] = set()
    for line in site.log(name).splitlines():
        if '"block_stored"' not in line:
            continue
        event = json.loads(line)
        if event.get("gateway") == site.gateway:
            found.add((event["epoch"], event["seq"]))
    return found


KILLED_SESSION_EXPIRY = "5s"  # the [expiring] variant: the SIGKILLed member's session


@pytest.mark.parametrize("sessions", ["expiring", "durable"])
def test_two_collectors_share_a_gateway_and_a_sigkill_loses_nothing(
    shared_site: Site, sessions: str
) -> None:
    """Every session is durable (each collector under its own id). [durable]: the SIGKILLed
    member comes back (as systemd restarts it) and takes what its session queued. [expiring]:
    it stays dead; its session expires after `KILLED_SESSION_EXPIRY`, its share returns to
    the live member, and the agent resends what the broker dropped with it."""
    site = shared_site
    durable = sessions == "durable"
    if durable:
        site.add_collector("collector-b", client_id="gz-collector-b")
        site.add_collector("collector-a", client_id="gz-collector-a")
        first = "collector-a"
        site.api_port = site.collector_ports[first]
    else:  # default ids: they differ by api.listen
        site.add_collector("collector-b", session_expiry=KILLED_SESSION_EXPIRY)
        first = "collector"
    site.start_collector(first, "--debug", "--log-format", "json")
    site.start_collector("collector-b", "--debug", "--log-format", "json")
    site.start_agent()
    wait_until(
        lambda: bool(_stored_blocks(site, first)) and bool(_stored_blocks(site, "collector-b")),
        60,
        "both collectors storing blocks of the gateway",
    )
    site.stop("collector-b", signal.SIGKILL)
    killed_at = site.sealed_blocks()
    wait_until(lambda: site.sealed_blocks() > killed_at + 15, 60, "15 more blocks sealed")
    if durable:
        # A durable session outlives its process: the broker keeps queueing its share of the
        # blocks until it comes back (as systemd restarts it) and takes them.
        site.start_collector("collector-b", "--debug", "--log-format", "json")
    site.drain_and_stop_agent(timeout=120)
    site.assert_committed_readings_served_once()
    stored_by_a, stored_by_b = _stored_blocks(site, first), _stored_blocks(site, "collector-b")
    assert stored_by_a
    assert stored_by_b
    # Each block was stored by one collector (the other found it a duplicate, if it saw it).
    assert not stored_by_a & stored_by_b
    gateway = next(
        g
        for g in site.api("/v1/gateways")["items"]  # type: ignore[attr-defined]
        if g["gateway"] == site.gateway
    )
    assert gateway["acked_through"] == max(seq for _, seq in stored_by_a | stored_by_b)
