"""Fault matrix, R6: a flaky link between agent and broker, through the project's fault proxy.

One agent talks to Mosquitto through `tests.support.faultproxy`; the collector talks to the
broker directly. The link goes through four phases, each ended by a condition (ACKs arriving,
a reconnect seen at the proxy), never by a fixed sleep:

1. latency 80 ms +- 60 ms per direction;
2. periodic cuts: every connection reset (RST), three times, each after the agent reconnected
   and got ACKs again;
3. half-open: nothing forwarded, nothing closed; only the agent's MQTT keepalive (2 s) can
   notice, and it must: the proxy sees the agent connect again;
4. every byte written one at a time, both ways.
"""

from __future__ import annotations

import time

import pytest

from demo.broker import Broker
from tests.e2e.harness import Site, wait_until
from tests.faults.common import delivered, sealed_more, tune
from tests.faults.conftest import Conclude, MakeSite
from tests.faults.oracle import Ledger
from tests.support.faultproxy import ProxyThread

pytestmark = pytest.mark.timeout(240)

CUTS = 3


def _acked_more(site: Site, blocks: int, timeout: float = 60) -> None:
    target = delivered(site) + blocks
    wait_until(lambda: delivered(site) >= target, timeout, f"{blocks} more blocks ACKed")


def _reconnected(proxy: ProxyThread, accepted: int, what: str) -> None:
    wait_until(lambda: proxy.stats().accepted > accepted, 30, what)


def test_flaky_link_latency_cuts_half_open_and_slicing(
    make_site: MakeSite, conclude: Conclude, broker: Broker
) -> None:
    started = time.monotonic()
    with ProxyThread(broker.port, seed=6) as proxy:
        site = make_site(
            tune(broker=f"mqtt://127.0.0.1:{proxy.port}", keepalive="2s", ack_timeout="3s")
        )
        site.start_agent()
        sealed_more(site, 3)
        _acked_more(site, 3)

        proxy.set(latency=0.08, jitter=0.06)
        _acked_more(site, 5)

        for _ in range(CUTS):
            accepted = proxy.stats().accepted
            assert proxy.reset_all() >= 1
            _reconnected(proxy, accepted, "the agent connecting again after a cut")
            _acked_more(site, 2)
        proxy.set(latency=0.0, jitter=0.0)

        accepted = proxy.stats().accepted
        proxy.set(half_open=True)
        noticed_from = time.monotonic()
        _reconnected(proxy, accepted, "the keepalive noticing the half-open link")
        noticed_after = time.monotonic() - noticed_from
        proxy.set(half_open=False)  # the dark connections are reset
        _acked_more(site, 3)

        proxy.set(slice_bytes=1)
        writes = proxy.stats().writes_up
        _acked_more(site, 2)  # a few thousand one-byte writes each way
        sliced = proxy.stats().writes_up - writes
        proxy.clear()

        verdict = conclude(site, Ledger(), "flaky_link_proxy", started)
        stats = proxy.stats()
    print(
        f"proxy: {stats.accepted} connections, {stats.resets} resets, {sliced} one-byte writes"
        f" up while slicing; half-open noticed after {noticed_after:.1f} s (keepalive 2 s)"
    )
    assert stats.resets >= CUTS
    assert sliced > 1000, "the uplink was not sliced"
    assert verdict.gap_records == 0
