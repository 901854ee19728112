"""Which alarms raised ahead the live feed announces active, and which raises each sweep reads.

Pure (collector.feed.due): the whole announcement, with a real collector on both backends, is
tests/integration/test_collector_stream_ahead.py.
"""

from __future__ import annotations

from dataclasses import replace

from collector.feed.due import (
    ACTIVATION_MARGIN,
    ActivationSweep,
    ActivationWindow,
    Written,
    due_activations,
)
from collector.readmodel import AlarmState

ALLOWANCE = 900.0
RAISED = 10_000.0
DUE = RAISED - ALLOWANCE
OPEN = AlarmState(
    gateway="gw",
    alarm_id="a/1",
    point="p",
    quota="WHP-LT",
    level="H",
    raised_at=RAISED,
    cleared_at=None,
    value=1.0,
    threshold=0.5,
    unit="m",
    trigger_t=RAISED,
    raised_ahead=True,
)


def test_the_first_sweep_reads_every_raise_and_the_whole_journal() -> None:
    assert ActivationWindow().sweep(5000.0, ALLOWANCE) == ActivationSweep(
        5000.0, ALLOWANCE, None, 0
    )
    assert ActivationWindow().sweep(5000.0, ALLOWANCE).raised_through == 5900.0


def test_each_sweep_reads_from_the_previous_a_margin_back_and_scans_from_one_before() -> None:
    window = ActivationWindow()
    for second in range(200):
        window = window.after(float(second), head=second * 10)
    sweep = window.sweep(200.0, ALLOWANCE)
    assert sweep.due_after == 199.0 - ACTIVATION_MARGIN
    assert sweep.raised_after == 199.0 - ACTIVATION_MARGIN + ALLOWANCE
    # The newest sweep at least a margin before the window: a row announcing a raise in it
    # was written after that sweep read its head.
    assert sweep.scan_after == int(199 - 2 * ACTIVATION_MARGIN) * 10
    assert sweep.fresh_after == sweep.scan_after
    assert len(window.swept) <= 3 * ACTIVATION_MARGIN + 2


def test_rows_stored_since_the_first_sweep_are_looked_at_whatever_the_window() -> None:
    """Before a sweep a margin back exists, rows above the first sweep's head (it looked at
    every raise then due), never the whole journal again."""
    window = ActivationWindow().after(100.0, head=70).after(101.0, head=75)
    sweep = window.sweep(102.0, ALLOWANCE)
    assert (sweep.scan_after, sweep.fresh_after) == (70, 70)


def test_the_first_sweeps_head_bounds_every_scan_until_one_a_margin_back_exists() -> None:
    """The defect (e1e817a, fa49f78): for 120 s after a start every sweep scanned from 0, the
    whole journal, once any alarm came due (one the first sweep announced did). Now the first
    sweep's head bounds the scans from the next sweep on; the rows below it are read alarm by
    alarm where an alarm has none above."""
    window = ActivationWindow().after(0.0, head=1010)
    scans = []
    for second in range(1, 122):
        scans.append(window.sweep(float(second), ALLOWANCE).scan_after)
        window = window.after(float(second), head=1010 + second)
    assert min(scans) == 1010


def test_a_raise_come_due_is_announced_unless_its_newest_row_says_it_active() -> None:
    key = (OPEN.gateway, OPEN.alarm_id)
    assert due_activations([OPEN], {}, ALLOWANCE) == [OPEN]
    assert due_activations([OPEN], {key: None}, ALLOWANCE) == [OPEN]
    # The writer's word, whatever its allowance: a row of one at 300 s written at DUE says
    # not active, a row of one at 1800 s written before DUE says active.
    assert due_activations([OPEN], {key: Written(DUE, active=False)}, ALLOWANCE) == [OPEN]
    assert due_activations([OPEN], {key: Written(DUE - 900, active=True)}, ALLOWANCE) == []
    # A row of an older collector keeps no `active`: judged at its `at`, as it was written.
    assert due_activations([OPEN], {key: Written(DUE - 1, active=None)}, ALLOWANCE) == [OPEN]
    assert due_activations([OPEN], {key: Written(DUE, active=None)}, ALLOWANCE) == []
    other = {("gw", "other"): Written(DUE + 5, active=True)}
    assert due_activations([OPEN], other, ALLOWANCE) == [OPEN]


def test_cleared_or_not_ahead_alarms_are_never_announced() -> None:
    cleared = replace(OPEN, cleared_at=RAISED + 1)
    current = replace(OPEN, raised_ahead=False)
    only_cleared = replace(OPEN, raised_at=None, cleared_at=RAISED)
    assert due_activations([cleared, current, only_cleared], {}, ALLOWANCE) == []
