"""Helpers of the fault-matrix tests: site-map edits and waiting on the agent's outbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.e2e.harness import Site, wait_until

SiteMap = dict[str, Any]


def tune(
    *,
    ack_timeout: str = "2s",
    keepalive: str | None = None,
    broker: str | None = None,
    points: int | None = None,
    poll: str | None = None,
    publish_rate: float | None = None,
) -> Callable[[SiteMap], None]:
    """A site-map edit for fault tests.

    A short `ack_timeout` makes the agent resend what a fault swallowed within the test;
    `points` keeps only the PLC's first N points (and drops the gas detector), so that with
    `poll` the reading rate is known (N points at 1 s = N readings/s).
    """

    def edit(site_map: SiteMap) -> None:
        uplink = site_map["uplink"]
        uplink["ack_timeout"] = ack_timeout
        if keepalive is not None:
            uplink["keepalive"] = keepalive
        if broker is not None:
            uplink["broker"] = broker
        if publish_rate is not None:
            uplink["publish_rate"] = publish_rate
        if points is not None:
            plc = site_map["devices"][0]
            plc["points"] = plc["points"][:points]
            site_map["devices"] = [plc]
        if poll is not None:
            for device in site_map["devices"]:
                device["poll"] = poll

    return edit


def delivered(site: Site) -> int:
    """Blocks the collector has ACKed so far (as the agent's outbox records it)."""
    return site.sealed_blocks() - site.undelivered()


def sealed_more(site: Site, blocks: int, timeout: float = 30) -> int:
    """Wait until the agent has sealed `blocks` more blocks than now; return the new count."""
    target = site.sealed_blocks() + blocks
    wait_until(lambda: site.sealed_blocks() >= target, timeout, f"{blocks} more sealed blocks")
    return target


def agent_sealing(site: Site, blocks: int, *, acked: bool = False) -> Site:
    """Start `site`'s agent and wait for `blocks` sealed blocks; with `acked`, also for the
    collector's ACK of every one (a first round trip, before a fault begins)."""
    site.start_agent()
    sealed_more(site, blocks)
    if acked:
        wait_until(lambda: site.undelivered() == 0, 30, "a first ACK round trip")
    return site
