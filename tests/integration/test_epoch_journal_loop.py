"""The running agent's epoch journal writes leave the event loop running while they sync.

An epoch started by the ACK handler (a rollback the collector's ACK proves) journals its epoch
with the proof that it sealed nothing (`EpochJournal.record`), takes that proof back just
before its first block commits (`EpochJournal.sealed_in`, `outbox_rewrite.begin_epoch`), and,
when that commit fails, writes it again (`EpochJournal.sealed_nothing`): each a file written,
fsynced and renamed. The first and the last ran on the event loop, which the pollers, the MQTT
keepalive and the status server share: on a slow or failing disk an fsync takes seconds, and
the whole agent stopped for them. Here a hook on the real write waits until a task on the loop
has counted turns: with the write on the loop nothing can turn, and the wait ends only at its
bound, with none counted. Real signed ACKs into the real AckTaker on a real outbox.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import edge_agent.shell.outbox as sealing_side
from edge_agent.shell import outbox_sidecars
from edge_agent.shell.outbox_sidecars import EpochJournal
from hostkit.atomicfile import replace_file
from tests.support.held_journal_write import START_WRITES
from tests.support.publisher_rig import ack_beyond_the_chain, ack_taker, three_blocks

pytestmark = pytest.mark.timeout(120)

TURNS = 3
# Only ends the wait when nothing can turn (the loop is the thread writing): not a timing.
BOUND = 10.0


class LoopWatch:
    """Counts the loop's turns while the journal write `held` (1: the first) waits to sync."""

    def __init__(self, path: Path, held: int) -> None:
        self._path = path
        self._held = held
        self.writes = 0
        self.writing = threading.Event()
        self.turned = threading.Event()
        self.turns = 0
        self.seen = 0  # turns counted by the end of the wait
        self.file_epoch: str | None = None  # the outbox file's epoch as the write began

    def replace_file(self, target: Path, data: bytes) -> None:
        """The real write (temporary file, fsync, rename); the one held waits first."""
        self.writes += 1
        if self.writes == self._held:
            with closing(sqlite3.connect(self._path)) as db:
                (self.file_epoch,) = db.execute(
                    "SELECT value FROM meta WHERE key = 'epoch'"
                ).fetchone()
            self.writing.set()
            self.turned.wait(BOUND)
            self.seen = self.turns
        replace_file(target, data)

    async def turn(self, stop: asyncio.Event) -> None:
        """A task of the loop, as a poller is: counts its turns while the write waits."""
        while not stop.is_set():
            await asyncio.sleep(0.001)
            if self.writing.is_set() and not self.turned.is_set():
                self.turns += 1
                if self.turns >= TURNS:
                    self.turned.set()


async def _rollback_while_held(
    path: Path,
    outbox: sealing_side.Outbox,
    monkeypatch: pytest.MonkeyPatch,
    held: int,
) -> LoopWatch:
    """The collector's ACK proving a rollback of the outbox's epoch, handled by a real
    AckTaker while the journal write `held` waits for the loop's turns (counted)."""
    watch = LoopWatch(path, held)
    monkeypatch.setattr(outbox_sidecars, "replace_file", watch.replace_file)
    stop = asyncio.Event()
    turning = asyncio.create_task(watch.turn(stop))
    try:
        await ack_beyond_the_chain(ack_taker(outbox), outbox.epoch)
    finally:
        stop.set()
        await turning
    return watch


@START_WRITES
async def test_an_ack_proven_epochs_journal_writes_are_synced_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: int, what: str
) -> None:
    path = tmp_path / "outbox.db"
    async with three_blocks(path, monkeypatch) as outbox:
        old = outbox.epoch
        watch = await _rollback_while_held(path, outbox, monkeypatch, held)
        # Before: 0 turns (the loop was the thread writing, so the wait ran to its bound).
        assert watch.seen == TURNS
        # Synced before its first block committed: the file still in the epoch left.
        assert watch.file_epoch == old
        assert outbox.epoch != old
        journal = EpochJournal.beside(path)
        assert journal.epochs()[-2:] == (old, outbox.epoch)
        assert not journal.latest_sealed_nothing()
        assert watch.writes == 2


async def test_the_proof_that_a_failed_epoch_sealed_nothing_is_synced_off_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first block's commit fails after the proof was taken back: written again."""
    path = tmp_path / "outbox.db"
    async with three_blocks(path, monkeypatch) as outbox:
        old = outbox.epoch
        taken_back = EpochJournal.sealed_in

        def then_failing(journal: EpochJournal, epoch: str) -> bool:
            taken_back(journal, epoch)
            raise sqlite3.OperationalError("disk I/O error")  # as the commit's, after it

        monkeypatch.setattr(EpochJournal, "sealed_in", then_failing)
        with capture_logs() as logs:
            watch = await _rollback_while_held(path, outbox, monkeypatch, 3)
        # Before: 0 turns (the loop was the thread writing, so the wait ran to its bound).
        assert watch.seen == TURNS
        # Written before the failure reached the ACK handler, which logs it.
        assert [e["event"] for e in logs if e["event"] == "ack_not_recorded"] == [
            "ack_not_recorded"
        ]
        assert outbox.epoch == old
        journal = EpochJournal.beside(path)
        assert journal.latest() != old
        assert journal.latest_sealed_nothing()
