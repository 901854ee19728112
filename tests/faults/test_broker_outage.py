"""Fault matrix, R3: the broker is down while the agent polls 5 readings/s.

The agent keeps polling and sealing into its outbox; when the broker is back, the backlog
goes out and the oracle holds. 15 s in the default run (its reconnects after the broker
returns take about as long again); the full 10 minutes under `-m soak`.
"""

from __future__ import annotations

import time

import pytest

from demo.broker import Broker
from edge_agent.shell.outbox_reads import read_outbox_stats
from tests.faults.common import agent_sealing, tune
from tests.faults.conftest import Conclude, MakeSite
from tests.faults.oracle import Ledger

pytestmark = pytest.mark.timeout(240)

READINGS_PER_SECOND = 5  # five points polled every second


@pytest.mark.parametrize(
    "outage",
    [
        pytest.param(15.0, id="15s"),
        pytest.param(600.0, id="10min", marks=[pytest.mark.soak, pytest.mark.timeout(1200)]),
    ],
)
def test_broker_down_while_polling_five_readings_a_second(
    make_site: MakeSite, conclude: Conclude, broker: Broker, outage: float
) -> None:
    started = time.monotonic()
    site = agent_sealing(make_site(tune(points=READINGS_PER_SECOND, poll="1s")), 3, acked=True)
    broker.stop()
    time.sleep(outage)  # the outage itself: the agent keeps polling and sealing meanwhile
    assert site.alive("agent")
    backlog = read_outbox_stats(site.outbox_path).undelivered_records
    broker.start()
    verdict = conclude(
        site, Ledger(), f"broker_down_{outage:.0f}s_5rps", started, drain_timeout=60 + outage / 5
    )
    print(f"backlog at the broker's return: {backlog} readings")
    assert backlog > 0
    assert verdict.gap_records == 0
