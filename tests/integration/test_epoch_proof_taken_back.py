"""No epoch commits while the epoch journal says an epoch sealed nothing (`sealed: false`).

That synced flag is the only proof a start gives that its epoch sealed nothing: a start that
finds a copy put back declares the copy's epoch and the journal's latest, unless the latest
is so proven (`outbox_recovery._sealed_nothing`). Standing while another epoch, or its own,
has committed blocks, it leaves those blocks declared by nobody: silent loss. So an epoch
start (`outbox_rewrite.begin_epoch`) and an opening that finds the file holding the journal's
epoch (`outbox_recovery.recovery_gaps`) take it back first, and are refused when they cannot
(OutboxUnavailableError naming the OS error and the remedy): a full disk, a journal that
cannot be read.

Real outbox files, a copy put back with SQLite's backup API as `sqlite3 .restore` does; the
journal's faults as a full disk and a process out of descriptors make them
(`tests.support.journal_faults`).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

import edge_agent.shell.outbox as outbox_side
import edge_agent.shell.outbox_sidecars as journal_side
from edge_agent.core.chain import SealedBlock
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_recovery import OutboxUnavailableError
from edge_agent.shell.outbox_rewrite import begin_epoch as begin_epoch_as_it_is
from edge_agent.shell.outbox_sidecars import EpochJournal
from hostkit.atomicfile import replace_file
from tests.support.journal_faults import (
    disk_full,
    full_from_the_take_back,
    unreadable_at_the_take_back,
)
from tests.support.outbox_budget import minute_block
from tests.support.outbox_epochs import (
    K_BLOCKS,
    K_FIRST,
    abandoned_with_a_proof,
    copy_put_back,
    declared_once_put_back_again,
    k_sealed_then_put_back,
    sealed_epoch,
)
from tests.support.outbox_site import KEY, SITE, T0

pytestmark = pytest.mark.timeout(120)


def _chain(path: Path) -> tuple[str, int]:
    """The file's epoch and last seq, as committed."""
    with closing(sqlite3.connect(path)) as db:
        meta = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('epoch', 'last_seq')"))
    return str(meta["epoch"]), int(meta["last_seq"])


async def _sealed_in_a_new_epoch(path: Path) -> str:
    """An opening that abandons the file's epoch and seals K's blocks: its epoch."""
    return await sealed_epoch(path, K_BLOCKS, K_FIRST)


def _refused_on_a_full_disk(refused: pytest.ExceptionInfo[OutboxUnavailableError], k: str) -> None:
    """The refusal names K's proof, the OS error and the remedy."""
    message = str(refused.value)
    assert f"cannot take back the proof that epoch {k} sealed nothing" in message
    assert "No space left on device" in message
    assert "free some space" in message


async def _refused_start(path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A start abandoning a copy put back, refused as the disk fills at its take-back."""
    with monkeypatch.context() as full:
        full_from_the_take_back(full)
        with pytest.raises(OutboxUnavailableError):
            await _sealed_in_a_new_epoch(path)
    journal = EpochJournal.beside(path)
    assert journal.latest_sealed_nothing()
    return journal.latest() or ""


async def _entry_not_written_once(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, list[tuple[str | None, bool]]]:
    """A start whose journal entry's write fails (the disk full), then room is made: its epoch,
    and the journal's latest epoch and proof as its first block has committed."""
    journal = EpochJournal.beside(path)
    at_commit: list[tuple[str | None, bool]] = []
    with monkeypatch.context() as full:

        def full_once(*args: object, **kwargs: object) -> None:
            full.setattr(journal_side, "replace_file", replace_file)
            disk_full(*args, **kwargs)

        async def begin_epoch(*args: Any, **kwargs: Any) -> SealedBlock:
            block = await begin_epoch_as_it_is(*args, **kwargs)
            at_commit.append((journal.latest(), journal.latest_sealed_nothing()))
            return block

        full.setattr(journal_side, "replace_file", full_once)
        full.setattr(outbox_side, "begin_epoch", begin_epoch)
        return await _sealed_in_a_new_epoch(path), at_commit


@pytest.mark.parametrize("disk", ["still_full", "entry_written_at_the_block"])
async def test_an_epoch_start_under_an_older_epochs_proof_is_refused_or_named(
    tmp_path: Path, disk: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start refused at its take-back (K1 proven empty), then systemd starts it again.

    Its epoch K2's journal entry is not written (the disk full): the journal's latest is
    still K1, proven empty. `still_full`: the proof cannot be taken back either, so K2 is
    refused, nothing of it committed, and the next start, room made, goes on.
    `entry_written_at_the_block`: room made by then, the entry is written again inside the
    first block's transaction: K2 is named, no proof standing, when that block commits.
    Either way a copy put back again has K2's blocks declared. Before: K2 committed and
    sealed under K1's proof (`still_full`: the copy put back declared [copied, latest], K2's
    blocks by nobody; `entry_written_at_the_block`: until the opening's end named K2).
    """
    path, copy = tmp_path / "outbox.db", tmp_path / "copy.db"
    copied, latest = await copy_put_back(path, copy)
    k1 = await _refused_start(path, monkeypatch)
    journal = EpochJournal.beside(path)
    if disk == "still_full":
        with monkeypatch.context() as full:
            full.setattr(journal_side, "replace_file", disk_full)
            with pytest.raises(OutboxUnavailableError) as refused:
                await _sealed_in_a_new_epoch(path)
        _refused_on_a_full_disk(refused, k1)
        assert _chain(path) == (copied, 3)  # nothing of K2 committed
        assert (journal.latest(), journal.latest_sealed_nothing()) == (k1, True)
        k2 = await _sealed_in_a_new_epoch(path)  # room made: the next start goes on
    else:
        k2, at_commit = await _entry_not_written_once(path, monkeypatch)
        # Before: (K1, True), the journal naming K2 only at the opening's end.
        assert at_commit == [(k2, False)]
    assert (journal.latest(), journal.latest_sealed_nothing()) == (k2, False)
    declared = await declared_once_put_back_again(path, copy)
    assert k2 in declared
    assert copied in declared
    assert latest in declared


async def test_an_opening_finding_its_epoch_committed_is_refused_while_its_proof_stands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file holds K (a commit whose WAL fsync failed, recovered), the journal says K
    sealed nothing, and the disk is full: the opening cannot take the proof back.

    Refused, nothing more sealed in K; the next opening, room made, takes it back, and a copy
    put back has K declared. Before: the failed take-back was ignored, K sealed under its
    proof, and the copy put back declared [copied, latest]: K's blocks by nobody.
    """
    path, copy = tmp_path / "outbox.db", tmp_path / "copy.db"
    copied, latest = await copy_put_back(path, copy)
    k = await abandoned_with_a_proof(path)
    journal = EpochJournal.beside(path)
    at = _chain(path)
    with monkeypatch.context() as full:
        full.setattr(journal_side, "replace_file", disk_full)
        with pytest.raises(OutboxUnavailableError) as refused:
            async with open_outbox(path, SITE, KEY) as outbox:
                await outbox.seal(minute_block(200), now=T0 + 200, clock_synced=True)
    _refused_on_a_full_disk(refused, k)
    assert _chain(path) == at
    assert journal.latest_sealed_nothing()
    declared = await k_sealed_then_put_back(path, copy, k)
    assert k in declared
    assert copied in declared
    assert latest in declared


async def test_an_epoch_start_is_refused_when_its_journal_cannot_be_read_at_the_take_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start abandoning a copy put back; at the take-back the journal cannot be read (EMFILE).

    Unread, the proof is not taken back: refused, nothing of the epoch committed, the proof
    true. Before: the unreadable journal was read as empty, taken for no proof standing, and
    the epoch committed and sealed under its proof.
    """
    path, copy = tmp_path / "outbox.db", tmp_path / "copy.db"
    copied, _ = await copy_put_back(path, copy)
    journal = EpochJournal.beside(path)
    with monkeypatch.context() as reading:
        unreadable_at_the_take_back(reading)
        with pytest.raises(OutboxUnavailableError) as refused:
            await _sealed_in_a_new_epoch(path)
    message = str(refused.value)
    assert "cannot read whether a proof that an epoch sealed nothing stands" in message
    assert "Too many open files" in message
    assert _chain(path) == (copied, 3)
    assert journal.latest_sealed_nothing()
