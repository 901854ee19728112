"""Readings held while a seal waits for another process's write lock are declared in time.

A seal waits up to the busy timeout (30 s) for a lock `edge-agent backfill`, `outbox
resend/export` or another agent's start holds; past `SET_ASIDE_AFTER` the readings polled
meanwhile are set aside behind it. A kill (SIGKILL, or systemd's after TimeoutStopSec=5 of a
stop) must find them counted in the seq mark's tally, for the next start to declare: the
tally is written as the set-aside starts and every `NOTE_EVERY` while it grows, and a stop
writes it before it waits for that seal. A real outbox, a real second process holding BEGIN
IMMEDIATE with the agent's own busy timeout, a real sealer (in a child process to kill it).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edge_agent.core.losses import NONE_LOST, LostReadings
from edge_agent.core.plan import OUTBOX_SEQ_MARK_TIMEOUT
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_seq_mark import SeqMark
from edge_agent.shell.sealer import NOTE_EVERY, SET_ASIDE_AFTER
from specs.records import GapReason, GapRecord, Record, iso_time
from tests.support.held_process import HOLD_WRITE_LOCK, ROOT, held_process
from tests.support.outbox_file import committed_readings, committed_records
from tests.support.outbox_site import KEY, SITE, T0, numbered_reading
from tests.support.sealer_rig import running_sealer

pytestmark = pytest.mark.timeout(180)

FLUSH = 10  # readings a block: a group is 80


@dataclass
class Tallies:
    """The tallies the sealer had the outbox write to the seq mark, in order; an event on each.

    The outbox's own `note_unsealed` writes every one."""

    counts: list[int] = field(default_factory=list)
    written: asyncio.Event = field(default_factory=asyncio.Event)

    async def until(self, count: int, within: float) -> None:
        """Until a tally of `count` is written, or `within` s have passed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                while count not in self.counts:
                    self.written.clear()
                    await self.written.wait()


def tallies_of(outbox: Outbox) -> Tallies:
    tallies = Tallies()
    note = outbox.note_unsealed

    async def noting(lost: LostReadings, instead_of: LostReadings = NONE_LOST) -> None:
        await note(lost, instead_of)
        tallies.counts.append(lost.count)
        tallies.written.set()

    outbox.note_unsealed = noting  # type: ignore[method-assign]
    return tallies


@dataclass
class SealStarts:
    """How many seals began (the outbox's own `seal_many` does each); an event on each."""

    started: int = 0
    began: asyncio.Event = field(default_factory=asyncio.Event)

    async def until(self, seals: int) -> None:
        async with asyncio.timeout(30):
            while self.started < seals:
                self.began.clear()
                await self.began.wait()


def seal_starts(outbox: Outbox) -> SealStarts:
    starts = SealStarts()
    seal_many = outbox.seal_many

    async def sealing(batches: Sequence[tuple[Record, ...]], **kwargs: object) -> object:
        starts.started += 1
        starts.began.set()
        return await seal_many(batches, **kwargs)  # type: ignore[arg-type]

    outbox.seal_many = sealing  # type: ignore[method-assign,assignment]
    return starts


async def tally_on_disk(path: Path) -> int:
    mark = await SeqMark.beside(path, OUTBOX_SEQ_MARK_TIMEOUT).read()
    return 0 if mark is None else mark.unsealed.count


async def test_a_stop_counts_what_is_held_before_it_waits_for_the_seal(tmp_path: Path) -> None:
    """The stop's flush waits for the seal in flight (up to the busy timeout), then seals:
    up to twice 30 s, where systemd kills the agent 5 s into the stop. Before: the tally
    read 1 s into the flush was 0 (written only once the flush's own seal failed)."""
    path = tmp_path / "outbox.db"
    held_readings = 300
    async with open_outbox(path, SITE, KEY) as outbox:  # the agent's busy timeout
        tallies = tallies_of(outbox)
        async with running_sealer(outbox, flush_readings=FLUSH) as run:
            with held_process(HOLD_WRITE_LOCK, str(path)) as held:
                run.queue.put_nowait(numbered_reading(0))
                await asyncio.sleep(SET_ASIDE_AFTER + 0.5)  # the seal waits, set-aside on
                for i in range(1, held_readings):
                    run.queue.put_nowait(numbered_reading(i))
                run.task.cancel()  # the stop, the pollers stopped
                await asyncio.gather(run.task, return_exceptions=True)
                flushing = asyncio.create_task(run.sealer.flush())
                await tallies.until(held_readings, within=1.0)
                tally = await tally_on_disk(path)
                assert not flushing.done()  # still waiting for the lock
                held.release()
            await flushing
    print(f"tally 1 s into the stop's flush: {tally} of {held_readings} held")
    assert tally == held_readings
    assert [r.t for r in committed_readings(path)] == [
        iso_time(T0 + i) for i in range(held_readings)
    ]
    assert await tally_on_disk(path) == 0  # taken off again once sealed


# A sealer polled at 100 readings/s in a process of its own, killed by the test.
CHILD = """
import asyncio, itertools, sys, time
from pathlib import Path
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.sealer import Sealer
from tests.support.outbox_site import KEY, SITE, numbered_reading

async def main() -> None:
    async with open_outbox(Path(sys.argv[1]), SITE, KEY) as outbox:
        print("opened", flush=True)
        sys.stdin.readline()  # the test holds the write lock now
        queue = asyncio.Queue(maxsize=2000)
        sealer = Sealer(outbox, queue, flush_interval=0.05, flush_readings=100,
                        clock_synced=lambda: True, on_sealed=lambda block: None)
        running = asyncio.create_task(sealer.run())
        numbers = itertools.count()
        while not running.done():
            for _ in range(10):
                await queue.put(numbered_reading(next(numbers)))
            await asyncio.sleep(0.1)
            print(f"held {sealer.held} {time.monotonic()}", flush=True)

asyncio.run(main())
"""


async def line_starting(process: asyncio.subprocess.Process, says: str) -> str:
    """The next line of `process` that starts with `says` (its log lines passed over)."""
    assert process.stdout is not None
    while not (line := (await process.stdout.readline()).decode()).startswith(says):
        assert line, f"the process ended before saying {says!r}"
    return line


async def test_a_kill_while_a_seal_waits_finds_the_readings_set_aside_declared(
    tmp_path: Path,
) -> None:
    """SIGKILL 5 s into a seal's wait for the lock: the next start declares at least what
    was held `NOTE_EVERY` (+ 0.5 s of slack) before the kill. Before: 0 declared (the tally
    was written only once the seal failed, 30 s in), up to the ring's 100,000 lost silently."""
    path = tmp_path / "outbox.db"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(path),
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    seen: list[tuple[int, float]] = []  # held, at (the child's monotonic clock: the system's)
    try:
        await line_starting(child, "opened")
        with held_process(HOLD_WRITE_LOCK, str(path)):
            assert child.stdin is not None
            child.stdin.write(b"go\n")
            await child.stdin.drain()
            while not seen or seen[-1][1] < seen[0][1] + 5.0:
                _, holding, said_at = (await line_starting(child, "held")).split()
                seen.append((int(holding), float(said_at)))
            killed_at = time.monotonic()
            child.kill()
            await child.wait()
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    declared_at_least = max(n for n, at in seen if at <= killed_at - NOTE_EVERY - 0.5)
    polled = seen[-1][0] + 20  # and at most two batches the child put after its last line
    async with (
        open_outbox(path, SITE, KEY) as outbox,
        running_sealer(outbox, flush_readings=FLUSH, count_lost=True) as run,
    ):
        run.queue.put_nowait(numbered_reading(10_000))
        await run.until_sealed(1)  # the gap record, if any, opens the same block
    gaps = [g.lost or 0 for g in committed_records(path) if isinstance(g, GapRecord)]
    print(f"held {NOTE_EVERY + 0.5} s before the kill: {declared_at_least}; declared: {gaps}")
    assert [g.reason for g in committed_records(path) if isinstance(g, GapRecord)] == [
        GapReason.DISK_FULL
    ]
    assert declared_at_least <= gaps[0] <= polled


async def test_a_seal_failing_after_the_stop_is_read_by_the_flush(tmp_path: Path) -> None:
    """The seal in flight fails at the busy timeout after the stop's cancel: the flush reads
    its error (before: asyncio's "Task exception was never retrieved", OperationalError),
    and counts what is held once its own seal fails too."""
    path = tmp_path / "outbox.db"
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: reports.append(context))
    try:
        async with open_outbox(path, SITE, KEY, busy_timeout=SET_ASIDE_AFTER + 1.0) as outbox:
            with held_process(HOLD_WRITE_LOCK, str(path)):
                async with running_sealer(outbox, flush_readings=FLUSH) as run:
                    for i in range(20):
                        run.queue.put_nowait(numbered_reading(i))
                    await asyncio.sleep(SET_ASIDE_AFTER + 0.5)
                    run.task.cancel()  # the stop; leaving the block flushes, and that fails
                    await asyncio.gather(run.task, return_exceptions=True)
                held_at_end = run.sealer.held
                del run
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    print(f"loop exception reports: {[r.get('message') for r in reports]}")
    assert reports == []
    assert (held_at_end, await tally_on_disk(path)) == (20, 20)


async def test_set_aside_goes_on_while_seals_fail_with_more_than_a_group_held(
    tmp_path: Path,
) -> None:
    """Seals failing (the lock held past the busy timeout), the sealer holds more than a
    group: the retry's readings are still set aside while it waits (the backpressure kept
    for more than a group held is for a slow disk, seals succeeding)."""
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY, busy_timeout=SET_ASIDE_AFTER + 2.0) as outbox:
        starts = seal_starts(outbox)
        with held_process(HOLD_WRITE_LOCK, str(path)) as held:
            async with running_sealer(outbox, flush_readings=FLUSH) as run:
                for i in range(300):
                    run.queue.put_nowait(numbered_reading(i))
                await starts.until(2)  # the first failed at the busy timeout: 300 held
                for i in range(300, 350):
                    run.queue.put_nowait(numbered_reading(i))
                await asyncio.sleep(SET_ASIDE_AFTER + 0.5)
                taken = (run.sealer.held, run.queue.qsize())
                held.release()
    print(f"held, queued while the retry waits: {taken}")
    assert taken == (350, 0)
    assert [r.t for r in committed_readings(path)] == [iso_time(T0 + i) for i in range(350)]


async def test_set_aside_stops_at_the_ring_bound(tmp_path: Path) -> None:
    """Past the ring's bound the queue keeps what comes (the pollers wait on it): memory
    stays ring + queue, and none of the readings held gives way."""
    path = tmp_path / "outbox.db"
    ring = 100
    async with open_outbox(path, SITE, KEY, busy_timeout=SET_ASIDE_AFTER + 2.0) as outbox:
        starts = seal_starts(outbox)
        with held_process(HOLD_WRITE_LOCK, str(path)) as held:
            async with running_sealer(outbox, flush_readings=FLUSH, ring_readings=ring) as run:
                run.queue.put_nowait(numbered_reading(0))
                await starts.until(1)
                for i in range(1, 301):
                    run.queue.put_nowait(numbered_reading(i))
                await asyncio.sleep(SET_ASIDE_AFTER + 0.5)
                taken = (run.sealer.held, run.queue.qsize())
                held.release()
                await run.until_sealed(301, timeout=30)
                lost = run.sealer.lost.count
    print(f"held, queued at the bound: {taken}")
    assert taken == (ring, 301 - ring)
    assert lost == 0
    assert [r.t for r in committed_readings(path)] == [iso_time(T0 + i) for i in range(301)]


async def test_a_reading_taken_as_the_stop_comes_is_kept(tmp_path: Path) -> None:
    """The get of a set-aside ends (it took its reading off the queue) in the loop pass
    before the stop's cancel reaches the sealer: the reading is held, and sealed by the
    flush, not dropped (it is in the queue no more)."""
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY, busy_timeout=SET_ASIDE_AFTER + 4.0) as outbox:
        with held_process(HOLD_WRITE_LOCK, str(path)) as held:
            async with running_sealer(outbox, flush_readings=FLUSH) as run:
                run.queue.put_nowait(numbered_reading(0))
                await asyncio.sleep(SET_ASIDE_AFTER + 0.5)  # the set-aside waits on a get
                run.queue.put_nowait(numbered_reading(1))
                await asyncio.sleep(0)  # the get's task ends; the sealer not woken yet
                run.task.cancel()
                await asyncio.gather(run.task, return_exceptions=True)
                taken = (run.sealer.held, run.queue.qsize())
                held.release()
    assert taken == (2, 0)
    assert [r.t for r in committed_readings(path)] == [iso_time(T0 + i) for i in range(2)]
