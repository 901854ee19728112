"""A seal waiting for the outbox's write lock, held by another process, leaves polling going.

`edge-agent backfill`, `edge-agent outbox resend/export` or a second agent's start hold
SQLite's write lock on the outbox for a while; the agent's seal meanwhile waits at BEGIN
IMMEDIATE, up to the busy timeout (30 s). The wait is on aiosqlite's thread: the event loop
turns. But the sealer took nothing from its bounded queue while a seal was in flight, so the
pollers, whose sink waits while that queue is full (backpressure), stopped once it had filled:
`poll_overrun`, readings of the cadence never taken. Shown with a real second process holding
the lock, the pollers' own sink (`queue_sink`) and a real sealer on a real outbox.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from edge_agent.shell import outbox_open
from edge_agent.shell.poller import queue_sink
from tests.support.held_process import HOLD_WRITE_LOCK, held_process
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.records import reading_at
from tests.support.sealer_rig import running_sealer

pytestmark = pytest.mark.timeout(120)

QUEUE = 50  # the queue's bound (the agent's is 2,000: at 75 readings/s, full in 27 s)
CYCLES = 60  # poll cycles while the lock is held
POINTS = 10  # readings a cycle
HELD_FOR = 5.0  # seconds the other process holds the lock; CYCLES take 0.6 s of them


async def test_polling_goes_on_while_a_seal_waits_for_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    taken = 0  # readings the sink took while the lock was held
    lags: list[float] = []  # how late the loop woke a 10 ms sleep, while held

    async def poll() -> None:
        nonlocal taken
        sink = queue_sink(run.queue)
        for cycle in range(CYCLES):
            t = T0 + 1 + cycle
            await sink([reading_at(t, float(p), point=f"P{p:02d}") for p in range(POINTS)])
            taken += POINTS
            await asyncio.sleep(0.01)

    async def probe() -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(time.monotonic() - before - 0.01)

    async with (
        outbox_open.open_outbox(path, SITE, KEY) as outbox,
        running_sealer(outbox, queue_size=QUEUE, flush_readings=100) as run,
    ):
        with held_process(HOLD_WRITE_LOCK, str(path)) as held:
            await run.queue.put(reading_at(T0, 1.0))
            await asyncio.sleep(0.5)  # sealed after 50 ms: the seal waits at BEGIN IMMEDIATE
            assert run.blocks == []
            polling, probing = asyncio.create_task(poll()), asyncio.create_task(probe())
            await asyncio.wait([polling], timeout=HELD_FOR)
            probing.cancel()
            held_back = taken
            held.release()
            await polling
        await run.until_sealed(1 + CYCLES * POINTS, timeout=60)
    print(f"taken while held: {held_back}; loop lag max {max(lags) * 1000:.0f} ms")
    # Before: 50 (the queue's bound; then the sink waited until the lock was let go).
    assert held_back == CYCLES * POINTS
    assert run.sealer.lost.count == 0
