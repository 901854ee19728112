"""The activation sweep on real storage, both backends: an alarm raised ahead is announced once.

Each sweep reads the raises that came due since the previous one, and the journal for rows
that announced them already (collector.storage.activations). Driven sweep by sweep at given
clocks, as `collector.feed.activations` runs them once a second; the whole collector on the
feed is tests/integration/test_collector_stream_ahead.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import pytest

from collector.feed.due import ActivationWindow, AlarmKey, Written
from collector.storage import activations, open_storage
from collector.storage.capabilities import AlarmActivations
from collector.storage.feed import FeedStatements
from collector.storage.queries import Fetch
from specs.records import AlarmEvent
from tests.support.collector_api import NANCHANG, NOW, store_blocks
from tests.support.collector_env import register
from tests.support.records import alarm_record

ALLOWANCE: Final = 900.0
RAISED: Final = NOW + 20 * 60  # received at NOW: 5 min past the allowance
DUE: Final = RAISED - ALLOWANCE


async def _sweep(
    storage: AlarmActivations,
    window: ActivationWindow,
    clocks: Sequence[float],
    allowance: float = ALLOWANCE,
) -> tuple[ActivationWindow, list[float]]:
    """Sweep at each of `clocks`; the window after, and when (seconds past DUE) each announced."""
    announced: list[float] = []
    for now in clocks:
        found = await storage.announce_activations(window.sweep(now, allowance))
        window = window.after(now, found.head)
        announced += [now - DUE for _ in found.alarms]
    return window, announced


@pytest.mark.parametrize("back", [150, 600])
async def test_a_clock_stepped_back_does_not_announce_a_raise_again(
    storage_url: str, back: int
) -> None:
    """The defect (e1e817a): the sweeps after a step back of the collector's clock (NTP) of
    150 s or more took the journal to scan from the newest sweep in their list, one of the
    clock before the step, whose head was past the row that had announced the raise: they
    announced it again. Now a sweep takes the newest row of each alarm come due wherever it is."""
    async with open_storage(storage_url) as storage:
        assert isinstance(storage, AlarmActivations)
        await register(storage, NANCHANG)
        await store_blocks(
            storage, NANCHANG, [[alarm_record("fast/1", AlarmEvent.RAISE, RAISED)]], received=NOW
        )
        window, first = await _sweep(
            storage, ActivationWindow(), [DUE - 200 + i for i in range(211)]
        )
        _, again = await _sweep(storage, window, [DUE + 10 - back + i for i in range(back + 1)])
    assert (first, again) == ([0.0], [])


async def test_a_sweep_of_a_smaller_allowance_takes_the_announcement_of_a_larger_one(
    storage_url: str,
) -> None:
    """Two collectors on one database, A at 900 s and B at 300 s (a rolling change of
    ingest.ahead_allowance): A announces the raise when its clock is 900 s short of it. The
    defect (e1e817a): B's sweeps, running all along, took a row for an announcement only if
    written once the raise was due by B's own allowance, and announced it again at 300 s.
    Now the row says `active` as A judged it, and B's sweeps take its word."""
    async with open_storage(storage_url) as storage:
        assert isinstance(storage, AlarmActivations)
        await register(storage, NANCHANG)
        await store_blocks(
            storage, NANCHANG, [[alarm_record("fast/1", AlarmEvent.RAISE, RAISED)]], received=NOW
        )
        clocks = [DUE - 10 + i for i in range(21)]
        b, by_b = await _sweep(storage, ActivationWindow(), clocks, allowance=300.0)
        _, by_a = await _sweep(storage, ActivationWindow(), clocks)
        later = [RAISED - 300.0 - 200 + i for i in range(211)]
        _, by_b_later = await _sweep(storage, b, later, allowance=300.0)
    assert (by_a, by_b, by_b_later) == ([0.0], [], [])


@pytest.mark.parametrize("restarted", [False, True])
async def test_a_raise_come_due_before_it_arrived_is_announced_by_a_larger_allowance(
    storage_url: str, restarted: bool
) -> None:
    """Two collectors on one database, A at 900 s sweeping all along and B at 300 s: B ingests
    a raise 600 s ahead of the clock and writes it not active (by B's allowance), then stops.
    By A's allowance the raise was due 300 s before it arrived, below the window of every
    later sweep of A (those look at raises come due since the previous sweep): the defect,
    nobody announced it. Now a sweep also takes each alarm with a journal row written since
    (a margin before) its previous sweeps, so A announces it at its next sweep."""
    async with open_storage(storage_url) as storage:
        assert isinstance(storage, AlarmActivations)
        await register(storage, NANCHANG)
        window, before = await _sweep(
            storage, ActivationWindow(), [NOW - 120 + i for i in range(120)]
        )
        raised = NOW + 600
        await store_blocks(
            storage,
            NANCHANG,
            [[alarm_record("fast/1", AlarmEvent.RAISE, raised)]],
            received=NOW,
            ahead_allowance=300.0,
        )
        if restarted:
            window = ActivationWindow()
        _, after = await _sweep(storage, window, [NOW + i for i in range(400)])
    # Seconds past DUE of this file's raise: when A swept, relative to NOW.
    assert (before, [at + DUE - NOW for at in after]) == ([], [0.0])


async def test_a_sweep_right_after_one_that_announced_does_not_scan_the_whole_journal(
    storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The defect (fa49f78): for 120 s after a start each sweep took again the alarm the first
    one had announced (its row is above the first sweep's head) and read the newest rows of
    it from journal id 0: a full scan of `feed` once a second. Now every read after the first
    sweep starts at its head."""
    bounds: list[int] = []
    newest_above = activations._newest_above

    async def recorded(
        fetch: Fetch, statements: FeedStatements, keys: Sequence[AlarmKey], after: int
    ) -> dict[AlarmKey, Written]:
        bounds.append(after)
        return await newest_above(fetch, statements, keys, after)

    monkeypatch.setattr(activations, "_newest_above", recorded)
    async with open_storage(storage_url) as storage:
        assert isinstance(storage, AlarmActivations)
        await register(storage, NANCHANG)
        await store_blocks(
            storage, NANCHANG, [[alarm_record("fast/1", AlarmEvent.RAISE, RAISED)]], received=NOW
        )
        window, first = await _sweep(storage, ActivationWindow(), [DUE])
        head = window.swept[0][1]
        bounds.clear()
        _, again = await _sweep(storage, window, [DUE + 1 + i for i in range(5)])
    assert (first, again, head > 0) == ([0.0], [], True)
    assert (len(bounds), min(bounds)) == (5, head)
