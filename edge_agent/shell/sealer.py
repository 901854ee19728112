"""Group commit: collect readings for a flush interval, then seal them as one block.

With an `AlarmStage`, each batch is evaluated for alarms just before it is sealed: the events
follow their triggering readings in the same block, and the alarm state is stored by the same
transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable

import structlog

from edge_agent.core.chain import SealedBlock
from edge_agent.shell.alarm_stage import AlarmStage
from edge_agent.shell.outbox import Outbox
from specs.records import Record

log = structlog.get_logger("edge_agent.sealer")

_RETRY_DELAY = 1.0


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
    ) -> None:
        self._outbox = outbox
        self._queue = queue
        self._flush_interval = flush_interval
        self._flush_readings = flush_readings
        self._clock_synced = clock_synced
        self._on_sealed = on_sealed
        self._alarms = alarms
        self._pending: list[Record] = []
        self._in_flight: asyncio.Future[None] | None = None

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
                try:
                    self._pending.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            # Shielded: cancelling the sealer must never abort a seal half-way; `flush`
            # awaits the one in flight.
            self._in_flight = asyncio.ensure_future(self._seal_pending())
            try:
                await asyncio.shield(self._in_flight)
            except sqlite3.Error as exc:
                # The readings stay pending (memory is bounded by the queue); a full disk or
                # a locked file may pass, and a crash here would lose what is queued.
                log.warning("seal_failed", error=str(exc), pending=len(self._pending))
                await asyncio.sleep(_RETRY_DELAY)

    def _take_ready(self) -> None:
        while len(self._pending) < self._flush_readings and not self._queue.empty():
            self._pending.append(self._queue.get_nowait())

    async def flush(self) -> None:
        """Seal every reading still held or queued (at shutdown, after the pollers stopped)."""
        if self._in_flight is not None and not self._in_flight.done():
            await asyncio.wait([self._in_flight])
        self._take_ready()
        while self._pending:
            await self._seal_pending()
            self._take_ready()

    async def _seal_pending(self) -> None:
        batch = tuple(self._pending)
        staged = None
        if self._alarms is not None:
            try:
                staged = self._alarms.evaluate(batch)
            except (ValueError, ArithmeticError) as exc:
                # Readings outrank alarms: a reading the evaluator cannot handle must not
                # stop sealing. The batch goes out without events; alarm state is unchanged.
                log.exception("alarm_evaluation_failed", error=str(exc), records=len(batch))
        block = await self._outbox.seal(
            staged.records if staged is not None else batch,
            now=time.time(),
            clock_synced=self._clock_synced(),
            alarm_state=staged.snapshot if staged is not None else None,
        )
        # Only now are these readings durable; until here a failure keeps them pending (and
        # the alarm state unchanged, so a retry evaluates them again from the same state).
        del self._pending[: len(batch)]
        if self._alarms is not None and staged is not None:
            self._alarms.commit(staged)
        log.debug("block_sealed", epoch=block.epoch, seq=block.seq, records=block.records)
        self._on_sealed(block)
