"""A start that found the outbox lost or corrupt, cut short before its first block committed.

Such a start makes a new file in a new epoch (`outbox_schema.prepare_file`: the epoch journal
records it, then the file's chain state commits), and only then seals the first block, the one
carrying the gap record that declares the old epoch's blocks lost (`outbox_restored`,
`outbox_corrupt`). A start killed, or whose seal failed, in between must not leave that
declaration to nobody: the next start finds a healthy file of the journal's epoch, or one
without chain state, and nothing in either says what the old epoch lost.
Real outbox files; the start runs in a real python subprocess, SIGKILLed (or failing as SQLite
does) at a hook.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest

from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_sidecars import EpochJournal
from specs.records import GapReason
from tests.support.outbox_budget import minute_block
from tests.support.outbox_epochs import copy_put_back, cut_short_start
from tests.support.outbox_file import committed_gap_records
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.sqlite_files import remove_with_log

pytestmark = pytest.mark.timeout(120)


_BLOCKS: Final = 6
# Starts of a restart loop: enough to tell one record added per start from none.
_LOOP_STARTS: Final = 5


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(64 * 1024))


@pytest.mark.parametrize(
    "lost",
    [(remove_with_log, GapReason.OUTBOX_RESTORED), (_garbage, GapReason.OUTBOX_CORRUPT)],
    ids=["missing", "corrupt"],
)
@pytest.mark.parametrize(
    "cut",
    [
        ("first_block", "killed", -signal.SIGKILL),
        ("first_block", "failed", 1),
        ("journal", "killed", -signal.SIGKILL),
    ],
    ids=["killed_at_first_block", "failed_at_first_block", "killed_after_journal"],
)
async def test_a_start_cut_short_before_its_first_block_leaves_the_old_epoch_declared(
    tmp_path: Path,
    lost: tuple[Callable[[Path], None], GapReason],
    cut: tuple[str, str, int],
) -> None:
    (lose, reason), (where, how, exit_code) = lost, cut
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        old_epoch = outbox.epoch
        for index in range(_BLOCKS):  # sealed, maybe sent: some of them held by the collector
            await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)
    lose(path)

    assert cut_short_start(path, where, how) == exit_code
    kept = [g for g in EpochJournal.beside(path).owed() if g.epoch == old_epoch]

    async with open_outbox(path, SITE, KEY) as outbox:  # the next start
        new_epoch = outbox.epoch
    assert new_epoch != old_epoch
    # Before: [] (the next start found the journal's epoch, at seq 0 or without chain state,
    # and declared nothing of the old one): seqs 1..6 of it declared by nobody.
    declared = [g for g in committed_gap_records(path) if g.epoch == old_epoch]
    assert [(g.reason, g.from_seq, g.to_seq) for g in declared] == [(reason, 1, None)]
    assert declared == kept  # as the cut-short start kept it: the same loss at the collector

    async with open_outbox(path, SITE, KEY) as outbox:  # and the one after: nothing again
        assert outbox.epoch == new_epoch
    assert len([g for g in committed_gap_records(path) if g.epoch == old_epoch]) == 1


@pytest.mark.parametrize("starts", [1, 3])
@pytest.mark.parametrize("then", ["kept", "gone"])
async def test_starts_cut_short_on_a_copy_put_back_leave_every_epoch_declared(
    tmp_path: Path, starts: int, then: str
) -> None:
    """A copy of an older epoch put back, then starts that abandon it failing at its first block.

    Each such start began an epoch of its own, never seen in the file, whose journal entry
    replaces the one before: what that entry's first block would have declared must be carried
    on, not lost with it. Before 418e95f the journal kept only [epoch, seq] pairs, read only for
    a file below its seq mark (the reviewer's scenarios `replaced` and `replaced_gone`).
    """
    path, copy = tmp_path / "outbox.db", tmp_path / "copy.db"
    copied, latest = await copy_put_back(path, copy)
    for _ in range(starts):  # a restart loop on a seal that keeps failing
        assert cut_short_start(path, "begin_epoch", "failed") == 1
    never_seen = EpochJournal.beside(path).epochs()[-starts:]
    if then == "gone":
        remove_with_log(path)
    async with open_outbox(path, SITE, KEY) as outbox:  # the start that gets through
        new_epoch = outbox.epoch
    declared = [
        g.epoch or "" for g in committed_gap_records(path) if g.reason == GapReason.OUTBOX_RESTORED
    ]
    owed = {copied: "copied", latest: "latest", **dict.fromkeys(never_seen, "never seen")}
    assert new_epoch not in owed
    # Before 418e95f: kept, 1 start: ['latest']; 3 starts: ['latest', 'never seen' x2];
    # gone, 1 start: ['copied', 'latest']; 3 starts: ['copied', 'latest', 'never seen' x2].
    # The epochs never seen sealed nothing: the file gone, the journal's latest is declared
    # (its file may have been lost with blocks), the copy kept, none of them (each start saw
    # its first block fail and journaled that it sealed nothing: EpochJournal.sealed_nothing).
    expected = {copied: "copied", latest: "latest"}
    if then == "gone":
        expected[never_seen[-1]] = "never seen"
    assert sorted(declared) == sorted(expected)  # each once


@pytest.mark.parametrize(("how", "exit_code"), [("failed", 1), ("killed", -signal.SIGKILL)])
async def test_a_restart_loop_on_a_first_block_that_fails_adds_no_gap_record(
    tmp_path: Path, how: str, exit_code: int
) -> None:
    """A copy put back, then starts that abandon it, each cut short at its new epoch's first
    block: `failed` (the seal fails, as SQLite's on a failing disk), `killed` (SIGKILL there:
    systemd's start timeout on a seal making room in a huge full outbox, the OOM killer).

    Under systemd the agent is started again and again on the same file: each start began an
    epoch of its own, declared lost by the next start beside what it carried on, so every
    start added one gap record to the journal's entry and to the first block that finally
    commits. Those epochs sealed nothing: the losses are the copy's epoch and the one before.
    """
    path, copy = tmp_path / "outbox.db", tmp_path / "copy.db"
    copied, latest = await copy_put_back(path, copy)
    journal = EpochJournal.beside(path)
    owed_after: list[list[str]] = []
    journal_bytes: list[int] = []
    for _ in range(_LOOP_STARTS):
        assert cut_short_start(path, "begin_epoch", how) == exit_code
        owed_after.append(sorted(g.epoch or "" for g in journal.owed()))
        journal_bytes.append(path.with_name(path.name + ".epochs").stat().st_size)
    # Before 8d5bc79 (failed), and before the proof was journaled ahead of the first block
    # (killed): 2, 3, 4, 5, 6 records owed (each start's epoch added), 480 -> 1356 bytes.
    assert owed_after == [sorted([copied, latest])] * _LOOP_STARTS
    # The journal grows by the epochs it names only (the last 16 kept).
    assert journal_bytes[-1] <= journal_bytes[0] + _LOOP_STARTS * len('"0123456789abcdef", ')
    async with open_outbox(path, SITE, KEY):  # the start that gets through
        pass
    declared = sorted(g.epoch or "" for g in committed_gap_records(path))
    assert declared == sorted([copied, latest])
