"""An epoch start cancelled while its journal write is on the thread keeps its locks until then.

The ACK handler's epoch start writes the journal on a thread (`EpochJournal.record_on_thread`,
`sealed_nothing_on_thread`), awaited under the epoch and outbox locks it holds. Its task is
cancelled routinely (the connection dropping mid-ACK: `first_failure`; a stop). The await
ended at once and the locks went with it, while the thread's read-modify-write of the journal
went on: the next start (the collector's next ACK after the reconnect proving the rollback
again) read the journal before the orphaned write renamed its own over it. The journal then
named the start that never committed as the latest and lost the one that did; the next opening
took the healthy file for a copy put back (`outbox_replaced`), declared its epoch lost from
seq 1 and left it. Real signed ACKs into the real AckTaker on a real outbox.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_sidecars import EpochJournal
from tests.support.held_journal_write import START_WRITES, cancelled_then_again
from tests.support.publisher_rig import (
    GATEWAY_KEY,
    SITE,
    ack_beyond_the_chain,
    ack_taker,
    three_blocks,
)

pytestmark = pytest.mark.timeout(60)


@START_WRITES
async def test_a_start_cancelled_while_journaling_leaves_the_next_starts_entry_standing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, held: int, what: str
) -> None:
    path = tmp_path / "outbox.db"
    async with three_blocks(path, monkeypatch) as outbox:
        old = outbox.epoch
        acks = ack_taker(outbox)
        over_at_once = await cancelled_then_again(
            lambda: ack_beyond_the_chain(acks, old), held, monkeypatch
        )
        started = outbox.epoch
        journal = EpochJournal.beside(path)
        epochs = journal.epochs()
        proven_empty = journal.latest_sealed_nothing()
    # The opening's, the cancelled start's (left as a start cut short leaves it), the next
    # one's. Before: (old, the cancelled start's epoch, never committed, 2): its write renamed
    # over the next start's entry.
    assert (epochs[0], epochs[-1], len(epochs)) == (old, started, 3)
    assert not proven_empty
    # The next opening finds the file in the journal's latest epoch: nothing declared lost.
    with capture_logs() as logs:
        async with open_outbox(path, SITE, GATEWAY_KEY) as again:
            reopened = again.epoch
    # Before: outbox_replaced, the healthy file declared lost from seq 1 and a third epoch.
    assert [e["event"] for e in logs if e["log_level"] in ("warning", "error")] == []
    assert reopened == started
    # Before: the cancelled start was over at once, its write still going, its locks released.
    assert not over_at_once


async def test_a_start_cancelled_while_proving_it_sealed_nothing_leaves_the_next_start_sealed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first block's commit fails after the proof was taken back: written again (held)."""
    path = tmp_path / "outbox.db"
    taken_back = EpochJournal.sealed_in
    failed: list[bool] = []

    def first_fails(journal: EpochJournal, epoch: str) -> bool:
        """The first start's commit fails as SQLite's does, after the take-back; not the next."""
        done = taken_back(journal, epoch)
        if not failed:
            failed.append(True)
            raise sqlite3.OperationalError("disk I/O error")
        return done

    monkeypatch.setattr(EpochJournal, "sealed_in", first_fails)
    async with three_blocks(path, monkeypatch) as outbox:
        old = outbox.epoch
        acks = ack_taker(outbox)
        over_at_once = await cancelled_then_again(
            lambda: ack_beyond_the_chain(acks, old), 3, monkeypatch
        )
        started = outbox.epoch
    journal = EpochJournal.beside(path)
    # Before: its proof renamed over the next start's entry: the journal ending in the failed
    # epoch, proven to have sealed nothing; the committed one missing.
    assert (journal.epochs()[0], journal.latest(), len(journal.epochs())) == (old, started, 3)
    assert not journal.latest_sealed_nothing()
    # Before: the cancelled start was over at once, its write still going, its locks released.
    assert not over_at_once
