"""An epoch that sealed blocks is declared lost when a copy put back makes a start abandon it.

A start that abandons a copy put back (`outbox_replaced`) starts an epoch K whose first block
declares the copy's epoch and the one before it. A restart loop on a first block that cannot
be sealed leaves such epochs that sealed nothing, and the next start leaves them undeclared
(`outbox_recovery._sealed_nothing`). The seq mark never naming K is no proof of that: it is
written without fsync (a power cut drops it), given up on while another process holds it
(`seq_mark_given_up`), and it follows a copy put back under the running agent. Only the
epoch journal (synced) says so, written by K's start when it saw its first block fail.

Real outbox files, a real `flock` held as a stopped `edge-agent backfill` holds it, a copy
put back with SQLite's backup API as `sqlite3 .restore` does.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from edge_agent.shell import outbox_open
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_recovery import recovery_gaps
from edge_agent.shell.outbox_sidecars import EpochJournal
from specs.records import GapReason, GapRecord
from tests.support.outbox_budget import minute_block
from tests.support.outbox_epochs import (
    CUT_SHORT_START,
    K_BLOCKS,
    K_FIRST,
    abandoned_with_a_proof,
    copy_put_back,
    declared_by_the_next_start,
    k_sealed_then_put_back,
    seal_blocks,
    sealed_epoch,
)
from tests.support.outbox_file import committed_gap_records
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.sigkill_writer import ROOT
from tests.support.sqlite_files import online_copy, put_back

pytestmark = pytest.mark.timeout(120)

# A start that abandons the copy, cut short where the proof that its epoch sealed nothing
# (written with its journal entry) is taken back, just before its first block commits
# (`outbox_rewrite.begin_epoch`): `killed` right after; `commit_failed_on_a_full_disk` (the
# commit fails as on a failing disk, and the proof's rewrite with it: a disk that filled up);
# `not_taken_back` (the rewrite taking it back fails: a disk that filled up).
_CUT_AT_THE_PROOF = """
import asyncio, errno, os, signal, sqlite3, sys
from pathlib import Path
import edge_agent.shell.outbox_sidecars as journal_side
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_sidecars import EpochJournal
from tests.support.outbox_site import KEY, SITE

path, how = Path(sys.argv[1]), sys.argv[2]
taken_back = EpochJournal.sealed_in

def full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

def sealed_in(self, epoch):
    if how == "not_taken_back":
        journal_side.replace_file = full
    done = taken_back(self, epoch)
    if how == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "commit_failed_on_a_full_disk":
        journal_side.replace_file = full
        raise sqlite3.OperationalError("disk I/O error")
    return done

EpochJournal.sealed_in = sealed_in

async def main() -> None:
    async with open_outbox(path, SITE, KEY):
        pass

asyncio.run(main())
"""


@pytest.mark.parametrize("fault", ["power_cut", "mark_given_up", "restored_in_place"])
async def test_an_abandoning_epoch_that_sealed_blocks_isdeclared_by_the_next_start(
    tmp_path: Path, fault: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Epoch B copied, the file gone, epoch A; the copy put back: a start abandons it for K.

    K seals blocks none of which is ACKed (the collector offline), then: `power_cut` (the
    file back to the copy, its WAL frames of K dropped, and the unsynced mark with them);
    `mark_given_up` (a stopped backfill took the mark's lock as the start had read it, so
    K's seals are not noted; the copy put back again); `restored_in_place` (B another
    site's copy, put back under the running agent, which seals one more block in B's
    chain: the mark follows B). The next start must
    declare K's seqs lost: nobody else does.
    """
    path, copy = tmp_path / "outbox.db", tmp_path / "copy.db"
    mark_path = path.with_name(path.name + ".seq")
    if fault == "restored_in_place":
        other = tmp_path / "other" / "outbox.db"
        other.parent.mkdir()
        copied = await sealed_epoch(other, 3, 0)
        online_copy(other, copy)
        latest = await sealed_epoch(path, 5, 100)
        put_back(path, copy)
    else:
        copied, latest = await copy_put_back(path, copy)
    mark_before = mark_path.read_bytes()
    holder = os.open(mark_path, os.O_RDWR) if fault == "mark_given_up" else None
    if holder is not None:
        # A backfill takes the mark's lock right after the start read it, and stops.

        def then_held(*args: Any, **kwargs: Any) -> tuple[list[GapRecord], bool]:
            fcntl.flock(holder, fcntl.LOCK_EX)
            return recovery_gaps(*args, **kwargs)

        monkeypatch.setattr(outbox_open, "recovery_gaps", then_held)
        monkeypatch.setattr(outbox_open, "OUTBOX_SEQ_MARK_TIMEOUT", 0.0)
    try:
        async with open_outbox(path, SITE, KEY) as outbox:  # abandons the copy
            abandoning = outbox.epoch
            await seal_blocks(outbox, K_BLOCKS, K_FIRST)
            if fault == "restored_in_place":
                with (
                    closing(sqlite3.connect(copy)) as source,
                    closing(sqlite3.connect(path)) as live,
                ):
                    source.backup(live)
                await outbox.seal(minute_block(300), now=T0 + 300, clock_synced=True)
    finally:
        if holder is not None:
            os.close(holder)
    monkeypatch.undo()
    if fault == "power_cut":
        mark_path.write_bytes(mark_before)
    if fault != "restored_in_place":
        put_back(path, copy)
    declared = await declared_by_the_next_start(path)
    # Before: [copied, latest] (K's sealed, undelivered seqs declared by nobody).
    assert abandoning in declared
    assert copied in declared
    assert latest in declared


@pytest.mark.parametrize(
    ("how", "exit_code", "proof"),
    [
        ("killed_before_taken_back", -signal.SIGKILL, True),
        ("killed", -signal.SIGKILL, False),
        ("commit_failed_on_a_full_disk", 1, False),
        ("not_taken_back", 1, True),
    ],
)
async def test_a_start_cut_short_at_its_first_block_is_declared_unless_its_proof_stands(
    tmp_path: Path, how: str, exit_code: int, proof: bool
) -> None:
    """A start abandoning a copy put back is cut short at its new epoch's first block.

    Its journal entry is written with the proof that the epoch sealed nothing, taken back just
    before that block commits. `killed_before_taken_back` (SIGKILL at that block, as a restart
    loop past systemd's start timeout) leaves it standing: the epoch sealed nothing, and the
    next start declares the copy's epoch and the one before only. Taken back, then `killed`
    before the commit, or the commit failed and the proof's rewrite with it (a full disk):
    nothing tells the epoch sealed nothing, so the next start declares it too (one record
    more). `not_taken_back`: the start is refused before its commit, the proof true.
    """
    path, copy = tmp_path / "outbox.db", tmp_path / "copy.db"
    copied, latest = await copy_put_back(path, copy)
    if how == "killed_before_taken_back":
        argv = ["-c", CUT_SHORT_START, str(path), "begin_epoch", "killed"]
    else:
        argv = ["-c", _CUT_AT_THE_PROOF, str(path), how]
    start = subprocess.run([sys.executable, *argv], cwd=ROOT, check=False, capture_output=True)
    assert start.returncode == exit_code
    if how == "not_taken_back":
        assert b"cannot take back the proof that epoch" in start.stderr
    journal = EpochJournal.beside(path)
    cut_short = journal.latest() or ""
    assert cut_short not in (copied, latest)
    assert journal.latest_sealed_nothing() is proof
    async with open_outbox(path, SITE, KEY):
        pass
    lost = [
        g.epoch or "" for g in committed_gap_records(path) if g.reason == GapReason.OUTBOX_RESTORED
    ]
    # Before (no proof written ahead of the block): killed_before_taken_back also declared
    # the cut-short epoch, one record more a start in a restart loop of such kills.
    assert sorted(lost) == sorted([copied, latest, *([] if proof else [cut_short])])


async def test_a_proof_of_sealing_nothing_is_taken_back_once_the_file_shows_the_epoch(
    tmp_path: Path,
) -> None:
    """K's start wrote that its first block failed, yet the file later shows K committed.

    A commit whose WAL fsync failed (`disk I/O error`) leaves its frames in the WAL: the start
    reads the file back outside K and writes the proof, the process dies before its connection
    closes, and the next open recovers the frames: the file is in K, which seals and sends. A
    copy put back again must then have K declared: the proof is taken back by the first start
    that finds K committed. Before: left standing, K's seqs declared by nobody.
    """
    path, copy = tmp_path / "outbox.db", tmp_path / "copy.db"
    copied, latest = await copy_put_back(path, copy)
    abandoning = await abandoned_with_a_proof(path)
    journal = EpochJournal.beside(path)
    assert journal.latest_sealed_nothing()
    # The frames recovered: the file in K, which seals, taking the proof back.
    declared = await k_sealed_then_put_back(path, copy, abandoning)
    assert abandoning in declared
    assert copied in declared
    assert latest in declared
