"""Group commit: collect readings for a flush interval, then seal them as one block.

With an `AlarmStage`, each batch is evaluated for alarms just before it is sealed: the events
follow their triggering readings in the same block, and the alarm state is stored by the same
transaction.

When the outbox cannot be written (a full disk the outbox could not make room on, a broken
file), polling goes on: readings wait in a bounded memory ring, the newest kept, and the
sealer tries again every second. The readings the ring had to let go are counted, and the
first block sealed once the disk takes writes again opens with a `disk_full` gap record that
names them (how many, from when to when).

Those held and those let go are at risk until sealed: a kill (watchdog, OOM, power cut) takes
them. So after each failed seal they are counted in the seq mark's tally (a record rewritten in
place: no new disk block on a full disk), and taken off it again as seals take them; the next
start declares what the tally still holds. A kill loses undeclared at most the readings polled
since the last failed seal (one retry: a second and the seal's own attempt), as it loses those
queued for a seal; or, while a seal waits on a lock, since the last `NOTE_EVERY`.

A seal that waits on something other than its own work (another process's write lock on the
outbox, up to the busy timeout) does not stop the polling: past `SET_ASIDE_AFTER` the readings
polled meanwhile are set aside behind the ones it seals, up to the ring's bound, and count as
held from then on (`held`, the tally, written as the set-aside starts and every `NOTE_EVERY`
while it grows). The seal stays shielded all along. A stop counts what is held in the tally
before it waits for that seal (up to the busy timeout, past the stop's budget).
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from edge_agent.core.chain import SealedBlock
from edge_agent.core.losses import LostReadings, at_risk
from edge_agent.shell.alarm_stage import AlarmStage, StagedAlarms
from edge_agent.shell.outbox import Outbox
from specs.records import Record

log = structlog.get_logger("edge_agent.sealer")

_RETRY_DELAY = 1.0
# Full blocks sealed by one transaction (one fsync) when the sealer is behind its readings.
GROUP_BLOCKS = 8
# Readings held in memory while the outbox cannot be written (~200 bytes each).
RING_READINGS = 100_000
# A seal in flight this long waits on something else than its own work (encoding, signing,
# fsync): another process's write lock on the outbox, up to the busy timeout. The readings
# polled meanwhile are set aside; below it the queue's backpressure stays on the seal.
SET_ASIDE_AFTER = 1.0
# While readings are set aside the tally is written this often (not waited for): a kill during
# the wait loses at most this long's readings undeclared, not up to the busy timeout's.
NOTE_EVERY = 1.0


async def _get_within(queue: asyncio.Queue[Record], seconds: float) -> Record | None:
    """The next record, or None after `seconds`.

    `asyncio.timeout`, not `wait_for`: on Python 3.11 `wait_for` drops a cancellation that
    arrives in the same loop pass as the result, and a sealer that ignores its cancellation
    holds up the agent's shutdown.
    """
    try:
        async with asyncio.timeout(seconds):
            return await queue.get()
    except TimeoutError:
        return None


def _take_queued(queue: asyncio.Queue[Record], held: deque[Record], bound: int) -> None:
    """What is queued appended to `held`, up to `bound`.

    None of `held` gives way: a seal in flight pops its own readings off the front.
    """
    while len(held) < bound and not queue.empty():
        held.append(queue.get_nowait())


async def _set_aside_until(
    seal: asyncio.Future[None],
    queue: asyncio.Queue[Record],
    held: deque[Record],
    bound: int,
    note: Callable[[], object],
) -> None:
    """Take readings from `queue` into `held` as they come, until `seal` ends or `bound`.

    Past `bound` held readings the queue fills and the pollers wait, as before. One wait on
    both, no polling. `asyncio.wait` never cancels what it waits on: a cancel leaves the seal
    running. A get that ended has taken its reading, kept even on a cancel; one cancelled
    takes none (`Queue.get` leaves the item to the next getter). `note` (the tally) is
    called as it starts, then at least `NOTE_EVERY` apart (the wait's timeout wakes it); its
    first count takes in what the queue filled with during `SET_ASIDE_AFTER` already.
    """
    _take_queued(queue, held, bound)
    note()
    noted_at = time.monotonic()
    while not seal.done() and len(held) < bound:
        getting = asyncio.ensure_future(queue.get())
        either: list[asyncio.Future[Any]] = [seal, getting]
        due = noted_at + NOTE_EVERY - time.monotonic()
        try:
            await asyncio.wait(either, timeout=max(due, 0.0), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if getting.done() and not getting.cancelled():
                held.append(getting.result())
            else:
                getting.cancel()
        _take_queued(queue, held, bound)
        if time.monotonic() - noted_at >= NOTE_EVERY or len(held) >= bound:
            note()
            noted_at = time.monotonic()


class Sealer:
    """Drain the reading queue into blocks: every `flush_interval` or at `flush_readings`."""

    def __init__(
        self,
        outbox: Outbox,
        queue: asyncio.Queue[Record],
        *,
        flush_interval: float,
        flush_readings: int,
        clock_synced: Callable[[], bool],
        on_sealed: Callable[[SealedBlock], None],
        alarms: AlarmStage | None = None,
        ring_readings: int = RING_READINGS,
        lost: LostReadings | None = None,
    ) -> None:
        self._outbox = outbox
        self._queue = queue
        self._flush_interval = flush_interval
        self._flush_readings = flush_readings
        self._clock_synced = clock_synced
        self._on_sealed = on_sealed
        self._alarms = alarms
        self._ring_readings = max(ring_readings, flush_readings)
        # With alarms too: each batch of a group is evaluated from the state the one before it
        # leaves, and the transaction stores the last one's (AlarmStage.evaluate's `after`).
        self._group_readings = flush_readings * GROUP_BLOCKS
        self._pending: deque[Record] = deque()
        # Readings let go before a restart (a stop on a full disk), as the seq mark notes them:
        # named by the first block, then taken off the mark's tally (`_seal_pending`).
        self._carried = lost if lost is not None else LostReadings()
        # Readings this run let go (the ring's), not noted beside the outbox until a stop.
        self._lost = LostReadings()
        # This run's readings at risk (held and let go) as counted in the mark's tally.
        self._noted = LostReadings()
        self._in_flight: asyncio.Future[None] | None = None
        # The last seal failed: readings wait in the ring until one succeeds.
        self._failing = False
        self._noting: asyncio.Future[None] | None = None

    @property
    def lost(self) -> LostReadings:
        """Readings let go and not yet named by a seal (those of before a restart too)."""
        return self._carried.merge(self._lost)

    @property
    def held(self) -> int:
        """Readings waiting in memory."""
        return len(self._pending)

    async def run(self) -> None:
        """Seal forever; cancel to stop, then call `flush` to seal what is left."""
        while True:
            if not self._pending:
                self._pending.append(await self._queue.get())
            deadline = time.monotonic() + self._flush_interval
            while len(self._pending) < self._flush_readings:
                self._take_ready()
                remaining = deadline - time.monotonic()
                if len(self._pending) >= self._flush_readings or remaining <= 0:
                    break
                record = await _get_within(self._queue, remaining)
                if record is None:
                    break
                self._hold(record)
            # Behind (readings came while the last seal was on disk): what is queued goes
            # in too, sealed as full blocks by one transaction.
            self._take_ready(self._group_readings)
            try:
                await self._seal_setting_aside()
                self._failing = False
            except sqlite3.Error as exc:
                self._failing = True
                # The readings stay in the ring; a full disk or a locked file may pass, and
                # the pollers keep their cadence meanwhile. Counted in the tally first: what
                # `held` says is declared by the next start, should the process be killed.
                await self._note_at_risk()
                log.warning(
                    "seal_failed",
                    error=str(exc),
                    held=len(self._pending),
                    lost=self.lost.count,
                )
                await self._absorb(_RETRY_DELAY)

    async def _seal_setting_aside(self) -> None:
        """Seal what is held, setting readings aside behind it once in flight a while.

        A seal can wait up to the busy timeout for another process's write lock on the outbox
        (`edge-agent backfill`, `outbox resend/export`, another agent's start). The queue is
        bounded and the pollers' sink waits while it is full, so a sealer that only awaited
        the seal stopped the polling (`poll_overrun`), though the event loop turned all along.
        Still in flight after `SET_ASIDE_AFTER`, the seal has the readings polled meanwhile
        taken in behind the ones it seals (`_set_aside_until`, up to the ring's bound). It
        pops only its own off the front of `_pending`: those set aside are held as any other,
        counted by `held` and by the tally, sealed next (by `flush` after a stop), in order.
        Not while the sealer is behind (more than a group held) and seals succeed: a slow
        disk keeps the queue's backpressure, which bounds what a stop has left to seal.
        Shielded throughout: cancelling the sealer must never abort a seal half-way (its
        transaction still commits on aiosqlite's thread once the lock is free, and its
        readings, left pending, would be sealed again); `flush` awaits the one in flight.
        """
        self._in_flight = seal = asyncio.ensure_future(self._seal_pending())
        await asyncio.wait([seal], timeout=SET_ASIDE_AFTER)  # one wait: the seal's end wakes it
        if not seal.done() and (self._failing or len(self._pending) <= self._group_readings):
            await _set_aside_until(
                seal, self._queue, self._pending, self._ring_readings, self._start_noting
            )
        await asyncio.shield(seal)

    async def _note_at_risk(self) -> None:
        """The mark's tally made to count this run's readings at risk now, in one write.

        Shielded: a stop cancelling the sealer does not leave `_noted` saying what the mark
        does not (the write goes on, before `flush`'s own).
        """
        noting = self._start_noting(behind=True)
        if noting is not None:
            await asyncio.shield(noting)

    def _start_noting(self, *, behind: bool = False) -> asyncio.Future[None] | None:
        """That write started, not waited for (None: the tally says so already, or skipped).

        Not `behind` one still waiting for the mark's lock (a backfill holds it, up to its
        timeout): skipped, the set-aside's next `note` tries again. The mark's writes are
        made in order (its `_turn`), each from the tally the one before left.
        """
        if not behind and self._noting is not None and not self._noting.done():
            return None
        now_at_risk = at_risk(self._lost, self._pending)
        if now_at_risk == self._noted:
            return None
        before, self._noted = self._noted, now_at_risk
        self._noting = asyncio.ensure_future(
            self._outbox.note_unsealed(now_at_risk, instead_of=before)
        )
        return self._noting

    async def _taken_off(self) -> None:
        """After a seal: what it sealed (or its gap named) taken off the tally, if counted.

        A kill before this write has the next start declare them though they were sealed:
        a loss declared twice at worst, never one not declared.
        """
        if self._noted.count:
            await self._note_at_risk()

    def _hold(self, record: Record) -> None:
        """Keep a record in the ring; the oldest one gives way when it is full."""
        self._pending.append(record)
        if len(self._pending) > self._ring_readings:
            self._lost = self._lost.add(self._pending.popleft())

    async def _absorb(self, delay: float) -> None:
        """Keep taking readings into the ring for `delay` seconds (the pollers never wait)."""
        deadline = time.monotonic() + delay
        while (remaining := deadline - time.monotonic()) > 0:
            record = await _get_within(self._queue, remaining)
            if record is None:
                return
            self._hold(record)
            while not self._queue.empty():
                self._hold(self._queue.get_nowait())

    def _take_ready(self, limit: int | None = None) -> None:
        """Take what is queued, up to `limit` held readings (default: one block's worth)."""
        wanted = (self._flush_readings if limit is None else limit) - len(self._pending)
        ready = min(wanted, self._queue.qsize())
        if ready <= 0:
            return
        get, pending = self._queue.get_nowait, self._pending
        for _ in range(ready):
            pending.append(get())
        # The ring's bound, checked once for the lot (see _hold).
        while len(pending) > self._ring_readings:
            self._lost = self._lost.add(pending.popleft())

    def stopping_by(self, until: float) -> None:
        """The agent is stopping: no wait for a held seq mark goes past the loop time `until`."""
        self._outbox.stopping_by(until)

    async def flush(self) -> None:
        """Seal every reading still held or queued (at shutdown, after the pollers stopped).

        What is held and queued is counted in the tally first: the seal in flight may wait
        up to the busy timeout and this one as long again, well past the stop's budget
        (systemd's TimeoutStopSec, then SIGKILL), and a kill must find them declared.
        """
        _take_queued(self._queue, self._pending, self._ring_readings)
        self._start_noting(behind=True)
        seal = self._in_flight
        if seal is not None and not seal.done():
            await asyncio.wait([seal])
            # Ended after the stop's cancel: no one else reads how. Failed, its readings are
            # still held (sealed below, or counted).
            failed = None if seal.cancelled() else seal.exception()
            if isinstance(failed, sqlite3.Error):
                log.warning("seal_failed", error=str(failed), held=self.held)
            elif failed is not None:
                raise failed
        if self._noting is not None:
            await asyncio.wait([self._noting])
        while not self._queue.empty():
            self._hold(self._queue.get_nowait())
        try:
            while self._pending:
                await self._seal_pending()
        except sqlite3.Error as exc:
            # The disk is full: what is held goes with the process. Counted in the tally in
            # the seq mark beside the outbox (a file written in place: no new disk block
            # needed), in place of what the last failed seal counted, which still holds the
            # carried tally when no seal named it, so the next start names them all in a
            # disk_full gap record.
            unsealed = self._lost.add_all(self._pending)
            log.exception(
                "readings_unsealed_at_shutdown",
                error=str(exc),
                readings=len(self._pending),
                lost=self._carried.merge(unsealed).count,
            )
            before, self._noted = self._noted, unsealed
            await self._outbox.note_unsealed(unsealed, instead_of=before)

    def _batches(self) -> list[tuple[Record, ...]]:
        """The blocks to seal now: one (up to flush_readings), or several full ones."""
        size = self._flush_readings
        blocks = max(1, min(len(self._pending), self._group_readings) // size)
        held = tuple(itertools.islice(self._pending, blocks * size))
        return [held[start : start + size] for start in range(0, len(held), size)]

    async def _seal_pending(self) -> None:
        batches = self._batches()
        records = list(batches)
        staged: list[StagedAlarms] = []
        if self._alarms is not None:
            for index, batch in enumerate(batches):
                try:
                    evaluated = self._alarms.evaluate(batch, after=staged[-1] if staged else None)
                except (ValueError, ArithmeticError) as exc:
                    # Readings outrank alarms: a reading the evaluator cannot handle must not
                    # stop sealing. The batch goes out without events; alarm state is as the
                    # batch before it left it.
                    log.exception("alarm_evaluation_failed", error=str(exc), records=len(batch))
                    continue
                staged.append(evaluated)
                records[index] = evaluated.records
        carried, lost = self._carried, self.lost
        now = time.time()
        if lost.count:
            records[0] = (lost.gap(now), *records[0])
        blocks = await self._outbox.seal_many(
            records,
            now=now,
            clock_synced=self._clock_synced(),
            alarm_state=staged[-1].snapshot if staged else None,
        )
        # Only now are these readings durable; until here a failure keeps them pending (and
        # the alarm state unchanged, so a retry evaluates them again from the same state).
        for _ in range(sum(map(len, batches))):
            self._pending.popleft()
        if lost.count:
            log.warning("disk_full_gap_sealed", lost=lost.count, seq=blocks[0].seq)
            self._carried = self._lost = LostReadings()
            # Only what was read from the mark: another process's addition since stays.
            await self._outbox.unsealed_declared(carried)
        await self._taken_off()
        if self._alarms is not None:
            for evaluated in staged:
                self._alarms.commit(evaluated)
        for block in blocks:
            log.debug("block_sealed", epoch=block.epoch, seq=block.seq, records=block.records)
            self._on_sealed(block)
