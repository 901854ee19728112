"""Fault matrix, R10: the agent's wall clock stepped +1 h, back, and -1 h while it runs.

The agent runs as a real `edge-agent run` process behind `stepclock.py`, which replaces the
process's wall clock (`time.time`) with one the test steps by signals, leaving the monotonic
clock alone, as a real NTP step does. Asserted (DESIGN invariant 4):

* every step shows once in each point's reading times, and the cycle that straddles it is
  flagged `clock_jump`, at the agent and as served by the collector;
* the cadence is unbroken: polling goes on after each step (a scheduler on the wall clock
  would stall for an hour after a backward step), and no point has more readings than the
  monotonic time it ran allows (one on the wall clock would fire a burst after a forward step);
* the oracle: every reading stored once, seqs gap-free, one epoch.
"""

from __future__ import annotations

import itertools
import signal
import sys
import time
from pathlib import Path

import pytest

from specs.block import decode_block
from specs.records import Reading, parse_iso_time
from tests.faults.common import sealed_more, tune
from tests.faults.conftest import Conclude, MakeSite
from tests.faults.oracle import Ledger, served_items

pytestmark = pytest.mark.timeout(180)

STEPCLOCK = Path(__file__).with_name("stepclock.py")
STEP = 3600.0
POLL = 0.2
FLAG = "clock_jump"
STEPS = ((signal.SIGUSR1, +STEP), (signal.SIGUSR2, -STEP), (signal.SIGUSR2, -STEP))


def _series(ledger: Ledger) -> dict[str, list[tuple[float, bool]]]:
    """Per point, (wall time, flagged) of each reading in sealing order."""
    series: dict[str, list[tuple[float, bool]]] = {}
    for key in sorted(ledger.blocks):  # (epoch, seq, hash): sealing order in one epoch
        for record in decode_block(ledger.blocks[key]).records:
            if isinstance(record, Reading):
                series.setdefault(record.point, []).append(
                    (parse_iso_time(record.t), FLAG in record.flags)
                )
    return series


def _flags(item: dict[str, object]) -> list[str]:
    flags = item["flags"]
    assert isinstance(flags, list)
    return [str(flag) for flag in flags]


def test_wall_clock_steps_flag_readings_and_keep_the_cadence(
    make_site: MakeSite, conclude: Conclude
) -> None:
    started = time.monotonic()
    site = make_site(tune(poll=f"{POLL}s"))
    ledger = Ledger()
    spawned = time.monotonic()
    site.start_agent(wrapper=(sys.executable, str(STEPCLOCK)))
    sealed_more(site, 5)
    for sig, _ in STEPS:
        site.send_signal("agent", sig)
        sealed_more(site, 6)  # polling goes on after the step
    verdict = conclude(site, ledger, "clock_step_+1h_-1h_-1h", started)
    ran = time.monotonic() - spawned
    assert verdict.epochs == 1

    expected = [step for _, step in STEPS]
    report = []
    for point, readings in _series(ledger).items():
        deltas = [b[0] - a[0] for a, b in itertools.pairwise(readings)]
        jumps = [i for i, d in enumerate(deltas) if abs(d) > STEP / 2]
        # Each step shows once, in order, as a difference of about one hour.
        assert [round(deltas[i] / STEP) * STEP for i in jumps] == expected, (point, jumps)
        assert all(d > 0 for i, d in enumerate(deltas) if i not in jumps), point
        # The flagged reading is the first after the step, or the last before it when the
        # step fell between the driver's read and the poller's check.
        flagged = [i for i, (_, flag) in enumerate(readings) if flag]
        assert len(flagged) == len(STEPS), (point, flagged)
        for i, jump in zip(flagged, jumps, strict=True):
            assert i in {jump, jump + 1}, (point, flagged, jumps)
        # No burst: never more readings than monotonic slots in the time the agent ran.
        assert len(readings) <= ran / POLL + 2, (point, len(readings), ran)
        report.append(f"{point}: {len(readings)} readings in {ran:.1f} s, flagged {flagged}")
    flagged_served = sum(1 for item in served_items(site) if FLAG in _flags(item))
    flagged_sealed = sum(flag for readings in _series(ledger).values() for _, flag in readings)
    assert flagged_served == flagged_sealed == len(STEPS) * len(report)
    print("\n".join(report))
