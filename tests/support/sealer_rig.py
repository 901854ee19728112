"""A real `Sealer` running on a real outbox, as the agent runs it, for the outbox tests.

`running_sealer` starts `Sealer.run` on a queue the test fills, records every block it seals,
and on leaving cancels the run and flushes what is left, as the agent does at shutdown.
`SealerRun.until_sealed` waits on the seals themselves (no polling) and fails as soon as the
run ends, so a sealer that dies is reported as such, not as a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from edge_agent.core.chain import SealedBlock
from edge_agent.shell.alarm_stage import AlarmStage
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.sealer import RING_READINGS, Sealer
from specs.records import Record

# Long enough for a loaded 2-core box; every wait ends as soon as its seals happen.
SEAL_TIMEOUT = 10.0


@dataclass
class Seals:
    """The blocks a sealer reported sealed, in order; an event set on each."""

    blocks: list[SealedBlock] = field(default_factory=list)
    happened: asyncio.Event = field(default_factory=asyncio.Event)

    def on_sealed(self, block: SealedBlock) -> None:
        self.blocks.append(block)
        self.happened.set()


@dataclass(frozen=True)
class SealerRun:
    """The running sealer, its input queue and what it has sealed."""

    sealer: Sealer
    queue: asyncio.Queue[Record]
    task: asyncio.Task[None]
    seals: Seals

    @property
    def blocks(self) -> list[SealedBlock]:
        return self.seals.blocks

    @property
    def counts(self) -> list[int]:
        """Records per sealed block."""
        return [block.records for block in self.seals.blocks]

    async def until_sealed(self, records: int, timeout: float = SEAL_TIMEOUT) -> None:
        """Wait until at least `records` records are sealed; fail if the run ends first."""
        async with asyncio.timeout(timeout):
            while sum(self.counts) < records:
                assert not self.task.done(), "the sealer's run ended"
                self.seals.happened.clear()
                waiting = asyncio.ensure_future(self.seals.happened.wait())
                try:
                    await asyncio.wait({waiting, self.task}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiting.cancel()


@contextlib.asynccontextmanager
async def running_sealer(
    outbox: Outbox,
    *,
    flush_interval: float = 0.05,
    flush_readings: int = 100,
    alarms: AlarmStage | None = None,
    ring_readings: int = RING_READINGS,
    queue_size: int = 0,
    count_lost: bool = False,
) -> AsyncIterator[SealerRun]:
    """Run a Sealer on `outbox` (clock synced) for the block; flush at a normal exit.

    `count_lost` hands the sealer the outbox's count of readings that were never sealed, as
    the agent's runtime does.
    """
    queue: asyncio.Queue[Record] = asyncio.Queue(maxsize=queue_size)
    seals = Seals()
    sealer = Sealer(
        outbox,
        queue,
        flush_interval=flush_interval,
        flush_readings=flush_readings,
        clock_synced=lambda: True,
        on_sealed=seals.on_sealed,
        alarms=alarms,
        ring_readings=ring_readings,
        lost=await outbox.unsealed() if count_lost else None,
    )
    run = SealerRun(sealer, queue, asyncio.create_task(sealer.run()), seals)
    try:
        yield run
    finally:
        run.task.cancel()
        await asyncio.gather(run.task, return_exceptions=True)
    await sealer.flush()


def count_transactions(outbox: Outbox) -> list[int]:
    """From now on, how many blocks each of `outbox`'s seal transactions held, in order.

    The outbox's own `seal_many` still does every seal; this only notes its batches.
    """
    groups: list[int] = []
    seal_many = outbox.seal_many

    async def noting(batches: Sequence[tuple[Record, ...]], **kwargs: object) -> object:
        groups.append(len(batches))
        return await seal_many(batches, **kwargs)  # type: ignore[arg-type]

    outbox.seal_many = noting  # type: ignore[method-assign,assignment]
    return groups
