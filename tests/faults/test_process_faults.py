"""Fault matrix, processes (reliability note section 4, R1/R2/R4 and a frozen collector).

Real agent, collector, simulator and Mosquitto processes on loopback; the faults are signals.
Each case ends with the oracle (`tests.faults.oracle`): every reading the agent sealed is
stored at the collector exactly once or declared lost by a gap record, nothing is stored
twice, seqs are gap-free per epoch; and writes one result line.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter

import pytest

from demo.broker import Broker
from tests.e2e.harness import Site, wait_until
from tests.faults.common import agent_sealing, delivered, sealed_more, tune
from tests.faults.conftest import Conclude, MakeSite
from tests.faults.oracle import Ledger

pytestmark = pytest.mark.timeout(240)

AGENT_KILLS = 20
COLLECTOR_KILLS = 2


def test_agent_sigkilled_twenty_times_in_a_row(make_site: MakeSite, conclude: Conclude) -> None:
    started = time.monotonic()
    site = agent_sealing(make_site(tune()), 3)
    rng = random.Random(20)
    for _ in range(AGENT_KILLS):
        if rng.random() < 0.3:
            # Early: importing, opening the outbox, connecting, the first polls and seals.
            time.sleep(rng.uniform(0.1, 1.0))
        else:
            # In steady state, anywhere in the poll/seal/publish/ACK cycle.
            sealed_more(site, 1)
            time.sleep(rng.uniform(0.0, 0.3))
        site.stop("agent", signal.SIGKILL)
        site.start_agent()
    sealed_more(site, 3)
    verdict = conclude(site, Ledger(), "agent_sigkill_x20", started)
    assert verdict.epochs == 1, "the outbox survived every kill: its epoch must too"
    assert verdict.gap_records == 0


def test_collector_sigkilled_while_ingesting_a_backlog(
    make_site: MakeSite, conclude: Conclude
) -> None:
    started = time.monotonic()
    # A slower drain (5 blocks/s) so that each kill lands while the backlog is going in.
    site = agent_sealing(make_site(tune(publish_rate=5)), 3)
    rng = random.Random(2)
    for _ in range(COLLECTOR_KILLS):
        site.stop("collector", signal.SIGKILL)
        wait_until(lambda: site.undelivered() >= 10, 60, "a backlog of 10 blocks")
        before = delivered(site)
        site.start_collector()
        _wait_for_acks(site, before)
        time.sleep(rng.uniform(0.0, 0.5))
        site.stop("collector", signal.SIGKILL)
    site.start_collector()
    sealed_more(site, 3)
    conclude(site, Ledger(), f"collector_sigkill_during_ingest_x{COLLECTOR_KILLS}", started)


def test_broker_sigkilled_with_blocks_queued(
    make_site: MakeSite, conclude: Conclude, broker: Broker
) -> None:
    started = time.monotonic()
    site = agent_sealing(make_site(tune()), 3, acked=True)
    # A frozen collector reads nothing: the broker takes the blocks (PUBACK) and queues them.
    site.send_signal("collector", signal.SIGSTOP)
    sealed_more(site, 10)
    queued = site.undelivered()
    broker.stop(signal.SIGKILL)  # the queue dies with it
    broker.start()
    site.send_signal("collector", signal.SIGCONT)
    verdict = conclude(site, Ledger(), "broker_sigkill_with_queue", started)
    assert queued >= 10
    assert verdict.gap_records == 0
    assert '"event": "uplink_lost"' in site.log("agent")


def _wait_for_acks(site: Site, before: int) -> None:
    wait_until(lambda: delivered(site) > before, 60, "the collector ACKing the backlog")


def _resends(site: Site) -> Counter[int]:
    """How often each seq's ACK timed out (so it was owed again), from the agent's log."""
    counts: Counter[int] = Counter()
    for line in site.log("agent").splitlines():
        # (a line the agent is still writing is left for the next look)
        if '"event": "block_ack_timed_out"' in line and line.endswith("}"):
            counts[int(json.loads(line)["seq"])] += 1
    return counts


@pytest.mark.parametrize(
    "frozen",
    [
        # Frozen until a block has timed out twice (sent, resent, resent again: 6-7 s at the
        # 2 s ACK timeout, the second wait doubled), rather than a fixed 10 s that had several
        # blocks resent up to four times: the collector still continues into duplicates it
        # must store once.
        pytest.param(None, id="until-resent-twice"),
        pytest.param(30.0, id="30s", marks=pytest.mark.soak),
    ],
)
def test_collector_frozen_then_continued(
    make_site: MakeSite, conclude: Conclude, frozen: float | None
) -> None:
    started = time.monotonic()
    site = agent_sealing(make_site(tune()), 3)
    site.send_signal("collector", signal.SIGSTOP)
    # The fault itself; the agent seals and resends (ACK timeout 2 s).
    if frozen is None:
        wait_until(lambda: max(_resends(site).values(), default=0) >= 2, 60, "a block resent twice")
    else:
        time.sleep(frozen)
    assert site.alive("agent")
    backlog = site.undelivered()
    site.send_signal("collector", signal.SIGCONT)
    case = "until_resent_twice" if frozen is None else f"{frozen:.0f}s"
    verdict = conclude(site, Ledger(), f"collector_sigstop_{case}", started)
    assert backlog > 0
    assert _resends(site), "nothing was resent"
    assert verdict.duplicates == 0
