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
import itertools
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge_agent.core.plan import OUTBOX_SEQ_MARK_TIMEOUT
from edge_agent.shell import outbox_open
from edge_agent.shell.outbox_seq_mark import SeqMark
from edge_agent.shell.poller import queue_sink
from edge_agent.shell.sealer import SET_ASIDE_AFTER
from specs.records import GapRecord
from tests.support.held_process import HOLD_WRITE_LOCK, held_process
from tests.support.outbox_file import committed_readings, committed_records
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.records import reading_at
from tests.support.sealer_rig import SealerRun, running_sealer

pytestmark = pytest.mark.timeout(120)

QUEUE = 50  # the queue's bound (the agent's is 2,000: at 75 readings/s, full in 27 s)
CYCLES = 60  # poll cycles while the lock is held
POINTS = 10  # readings a cycle
HELD_FOR = 5.0  # seconds the other process holds the lock; CYCLES take 0.6 s of them


@dataclass
class Pollers:
    """Poll cycles of POINTS readings through the pollers' own sink, readings counted."""

    taken: int = 0

    async def poll(self, run: SealerRun, cycles: int) -> None:
        sink = queue_sink(run.queue)
        for cycle in range(cycles):
            t = T0 + 1 + cycle
            await sink([reading_at(t, float(p), point=f"P{p:02d}") for p in range(POINTS)])
            self.taken += POINTS
            await asyncio.sleep(0.01)


async def test_polling_goes_on_while_a_seal_waits_for_the_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    lags: list[float] = []  # how late the loop woke a 10 ms sleep, while held
    pollers = Pollers()

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
            polling = asyncio.create_task(pollers.poll(run, CYCLES))
            probing = asyncio.create_task(probe())
            await asyncio.wait([polling], timeout=HELD_FOR)
            probing.cancel()
            taken_while_held = pollers.taken
            held.release()
            await polling
        await run.until_sealed(1 + CYCLES * POINTS, timeout=60)
    print(f"taken while held: {taken_while_held}; loop lag max {max(lags) * 1000:.0f} ms")
    # Before: 50 (the queue's bound; then the sink waited until the lock was let go).
    assert taken_while_held == CYCLES * POINTS
    assert run.sealer.lost.count == 0
    readings = committed_readings(path)
    assert len(readings) == 1 + CYCLES * POINTS
    # Set aside behind the readings in flight, sealed after them: each point's in order.
    for point, of_point in itertools.groupby(
        sorted(readings, key=lambda r: r.point), key=lambda r: r.point
    ):
        times = [r.t for r in of_point]
        assert times == sorted(times), point


async def test_readings_set_aside_are_held_and_counted_when_the_seal_fails(
    tmp_path: Path,
) -> None:
    """The seal fails at the busy timeout: what was set aside meanwhile is held, as readings
    held while seals fail are: `seal_failed` says so, and the seq mark's tally counts it (a
    kill would have the next start declare it). Before: 1 held and 1 in the tally (the
    reading in flight); the pollers waited with the rest."""
    path = tmp_path / "outbox.db"
    cycles = 30
    with capture_logs() as logs:
        async with (
            outbox_open.open_outbox(path, SITE, KEY, busy_timeout=SET_ASIDE_AFTER + 2.0) as outbox,
            running_sealer(outbox, queue_size=QUEUE, flush_readings=100) as run,
        ):
            with held_process(HOLD_WRITE_LOCK, str(path)) as held:
                await run.queue.put(reading_at(T0, 1.0))
                await asyncio.sleep(0.5)  # the seal waits at BEGIN IMMEDIATE
                polling = asyncio.create_task(Pollers().poll(run, cycles))
                async with asyncio.timeout(30):
                    while not any(e["event"] == "seal_failed" for e in logs):
                        await asyncio.sleep(0.05)
                [failed] = [e for e in logs if e["event"] == "seal_failed"]
                mark = await SeqMark.beside(path, OUTBOX_SEQ_MARK_TIMEOUT).read()
                assert mark is not None
                tally = mark.unsealed.count
                held.release()
            await polling
            await run.until_sealed(1 + cycles * POINTS, timeout=60)
    print(f"held at seal_failed: {failed['held']}; tally: {tally}")
    assert (failed["held"], tally) == (1 + cycles * POINTS, 1 + cycles * POINTS)
    records = committed_records(path)
    assert not [g for g in records if isinstance(g, GapRecord)]
    assert len(committed_readings(path)) == 1 + cycles * POINTS
    mark = await SeqMark.beside(path, OUTBOX_SEQ_MARK_TIMEOUT).read()
    assert mark is not None
    assert mark.unsealed.count == 0  # taken off again once sealed


async def test_a_reading_with_a_time_the_wire_refuses_does_not_end_the_sealer_in_a_long_seal(
    tmp_path: Path,
) -> None:
    """Counting what is held as the set-aside starts parsed every held reading's time: one
    outside 1970..2999 raised there and ended the sealer's run (the fresh-clone CI at 5e7e408,
    test_outbox's alarm-evaluator case, whose seal took over a second under load)."""
    path = tmp_path / "outbox.db"
    odd = replace(reading_at(T0, 1.0), t="9999-12-31T23:59:59.000+00:00")
    async with (
        outbox_open.open_outbox(path, SITE, KEY) as outbox,
        running_sealer(outbox, queue_size=QUEUE, flush_readings=100) as run,
    ):
        with held_process(HOLD_WRITE_LOCK, str(path)) as held:
            await run.queue.put(reading_at(T0, 1.0))
            await asyncio.sleep(0.5)  # the seal waits at BEGIN IMMEDIATE
            await run.queue.put(odd)  # set aside, and counted, once the seal waits 1 s
            await asyncio.sleep(SET_ASIDE_AFTER + 1.0)
            assert not run.task.done(), run.task  # before: ended by RecordFormatError
            held.release()
        await run.until_sealed(2, timeout=60)
