"""An epoch start cancelled twice still writes its proof that it sealed nothing again.

A start cut short after its first block's transaction took the proof back (the new epoch's
first block not committed) writes the proof again in its `except BaseException` path, once
the file says it is still in the old epoch. That path awaited the file's chain state
unshielded: a second cancellation there (a stop cancels again every 0.25 s) ended it before
the proof was written, and the next start declared an epoch that sealed nothing as lost (one
epoch too many: the safe direction, but false). Real outbox, real journal on disk.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edge_agent.shell.outbox_file import OutboxFile
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_recovery import declared_gap
from edge_agent.shell.outbox_sidecars import EpochJournal
from specs.records import GapReason
from tests.support.outbox_budget import minute_block
from tests.support.outbox_site import KEY, SITE, T0

pytestmark = pytest.mark.timeout(60)


async def test_an_epoch_start_cancelled_twice_writes_its_proof_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "outbox.db"
    take_back = EpochJournal.sealed_in_on_thread
    read_state = OutboxFile.chain_state
    hung, reading_again = asyncio.Event(), asyncio.Event()

    async def taken_back_then_hung(journal: EpochJournal, epoch: str) -> bool:
        # The proof taken back, then the first block's commit never comes: cancelled there.
        await take_back(journal, epoch)
        hung.set()
        await asyncio.Event().wait()
        raise AssertionError("never set")

    async def slow_once_hung(file: OutboxFile) -> object:
        if hung.is_set():  # the except path's read: long enough for a second cancellation
            reading_again.set()
            await asyncio.sleep(0.5)
        return await read_state(file)

    async with open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal(minute_block(0), now=T0, clock_synced=True)
        old = outbox.epoch
        monkeypatch.setattr(EpochJournal, "sealed_in_on_thread", taken_back_then_hung)
        monkeypatch.setattr(OutboxFile, "chain_state", slow_once_hung)
        gap = declared_gap(GapReason.OUTBOX_RESTORED, old, 1, T0 + 1)
        start = asyncio.create_task(outbox.start_new_epoch((gap,), now=T0 + 1, clock_synced=True))
        await hung.wait()
        start.cancel()
        await reading_again.wait()
        start.cancel()  # the second cancellation, while the file's epoch is read again
        with pytest.raises(asyncio.CancelledError):
            await start
        monkeypatch.undo()
        cut_short = EpochJournal.beside(path).latest()
        assert cut_short != old
        # Before: False, the proof taken back and never written again.
        assert EpochJournal.beside(path).latest_sealed_nothing()
        assert outbox.epoch == old
