"""A stop (SIGTERM) while the agent starts, at the moments the seq mark's waits end or begin.

`open_outbox(stop=...)` waits for another process's epoch lock and seq mark (each up to
120 s), and a stop ends those waits: OpeningStoppedError, nothing changed, the agent exits 0
(agent_stopped while_starting). Shown here: a stop that comes in the very turn of the loop in
which the wait ends (a hook on the mark's read, no sleeps), and the tally the agent reads
from the mark once the opening is done (`Outbox.unsealed`, edge_agent.shell.runtime) with
the mark held by a real second process as the stop comes.
"""

from __future__ import annotations

import asyncio
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from edge_agent.core.losses import LostReadings
from edge_agent.core.seq_mark_record import Mark
from edge_agent.shell import outbox_open
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_epoch_lock import OpeningStoppedError
from edge_agent.shell.outbox_seq_mark import SeqMark
from tests.support.flock_waits import until, waited_on_here
from tests.support.held_process import HOLD_FLOCK, held_process
from tests.support.outbox_file import newest_seq
from tests.support.outbox_openings import LET_GO, opened_and_closed, rolled_back
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.records import reading_at

pytestmark = pytest.mark.timeout(120)


async def test_a_stop_in_the_turn_the_openings_wait_ends_is_a_clean_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark's read ends and the stop is set in one turn of the loop (the stop's callback
    first, as a signal handler's would run): the stop ends the opening before it changes
    anything, as a stop during the wait does. Before, the stop's cancel was scheduled a turn
    later and landed in the middle of the opening (the outbox's connect): CancelledError, not
    the clean stop."""
    path = tmp_path / "outbox.db"
    epoch = await rolled_back(path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    read = SeqMark.read_at_opening

    async def read_then_stopped(self: SeqMark, *args: object, **kwargs: object) -> Mark | None:
        found = await read(self, *args, **kwargs)  # type: ignore[arg-type]
        ended = loop.create_future()

        def stopped_as_it_ends() -> None:
            stop.set()
            ended.set_result(None)

        loop.call_soon(stopped_as_it_ends)
        await ended
        return found

    monkeypatch.setattr(SeqMark, "read_at_opening", read_then_stopped)
    opening = asyncio.create_task(opened_and_closed(path, stop))
    await asyncio.wait([opening])
    assert not opening.cancelled(), "the stop cancelled the opening part-way"
    assert isinstance(opening.exception(), OpeningStoppedError)
    monkeypatch.undo()
    # Nothing changed: the rolled-back file and its mark as they were.
    assert newest_seq(path) == (epoch, 3)
    assert await SeqMark.beside(path, 5.0).read() == Mark(epoch, 5, LostReadings())


async def test_a_stop_ends_the_tally_read_after_the_opening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent reads the tally once more after the opening (runtime's `outbox.unsealed()`,
    the Sealer's `lost`): a mark held then was waited for up to its bound (5 s; 60 here) while
    the SIGTERM waited, and systemd's SIGKILL comes 5 s after it. Now the stop ends that wait:
    the tally read at the opening is the one used. Before: still waiting 8 s after the stop."""
    monkeypatch.setattr(outbox_open, "OUTBOX_SEQ_MARK_TIMEOUT", 60.0)
    path = tmp_path / "outbox.db"
    mark_path = path.with_name(path.name + ".seq")
    async with outbox_open.open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal((reading_at(T0, 1.0),), now=T0, clock_synced=True)
        await outbox.note_unsealed(LET_GO)  # an earlier stop on a full disk
    stop = asyncio.Event()
    async with outbox_open.open_outbox(path, SITE, KEY, stop=stop) as outbox:
        with held_process(HOLD_FLOCK, str(mark_path)):
            reading = asyncio.create_task(outbox.unsealed())
            await until(lambda: waited_on_here(mark_path), "the read never waited for the mark")
            stop.set()
            async with asyncio.timeout(8):
                assert await reading == LET_GO


async def test_a_stop_ends_the_openings_own_wait_to_write_the_mark(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its waits the opening writes the mark itself (the tally noted while the disk may
    have room, its gap block's seq): held by then (another process took it as the epoch lock
    was let go), that write waited up to its bound (5 s; 60 here) while the SIGTERM waited.
    Now the stop ends it and the opening goes on to its end (nothing polled yet: the write's
    change waits for the close). Before: still waiting 8 s after the stop."""
    monkeypatch.setattr(outbox_open, "OUTBOX_SEQ_MARK_TIMEOUT", 60.0)
    path = tmp_path / "outbox.db"
    mark_path = path.with_name(path.name + ".seq")
    async with outbox_open.open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal((reading_at(T0, 1.0),), now=T0, clock_synced=True)
        epoch = outbox.epoch
    stop = asyncio.Event()
    reseal = Outbox.reseal_older_epochs
    with ExitStack() as holding:

        async def held_once_resealed(self: Outbox, **kwargs: Any) -> int:
            # The holder takes the mark after the opening's waits, before it notes the tally.
            moved = await reseal(self, **kwargs)
            holding.enter_context(held_process(HOLD_FLOCK, str(mark_path)))
            return moved

        monkeypatch.setattr(Outbox, "reseal_older_epochs", held_once_resealed)
        opened = asyncio.Event()

        async def opened_then_stopping() -> None:
            async with outbox_open.open_outbox(path, SITE, KEY, stop=stop) as outbox:
                opened.set()
                # As shut_down does: the close waits for the held mark no longer than this.
                outbox.stopping_by(asyncio.get_running_loop().time())

        opening = asyncio.create_task(opened_then_stopping())
        try:
            await until(lambda: waited_on_here(mark_path), "the opening never waited for it")
            stop.set()
            async with asyncio.timeout(8):
                await opened.wait()
            await opening
        finally:
            opening.cancel()  # a failure is the one above, not a task left waiting
    # The opening's own write given up on: the mark as it was.
    assert await SeqMark.beside(path, 5.0).read() == Mark(epoch, 1, LostReadings())
