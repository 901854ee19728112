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
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

import pytest

from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_sidecars import EpochJournal
from specs.records import GapReason
from tests.integration.test_outbox_declarations import _block, _gap_records
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.sigkill_writer import ROOT

pytestmark = pytest.mark.timeout(120)

# argv: the outbox, where the start is cut short, how. `journal`: right after the journal
# recorded the new epoch, before the file's chain state committed; `first_block`: the chain
# state committed, at the seal of the first block (the one carrying the gap record).
_CUT_SHORT_START = """
import asyncio, os, signal, sqlite3, sys
from pathlib import Path
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_sidecars import EpochJournal
from tests.support.outbox_site import KEY, SITE

path, where, how = Path(sys.argv[1]), sys.argv[2], sys.argv[3]

def cut_short():
    if how == "killed":
        os.kill(os.getpid(), signal.SIGKILL)
    raise sqlite3.OperationalError("disk I/O error")

recorded = EpochJournal.record

def record(self, *args, **kwargs):
    recorded(self, *args, **kwargs)
    if where == "journal":
        cut_short()

async def seal(self, *args, **kwargs):
    cut_short()

EpochJournal.record = record
if where == "first_block":
    Outbox.seal = seal

async def main() -> None:
    async with open_outbox(path, SITE, KEY):
        pass

asyncio.run(main())
"""

_BLOCKS: Final = 6


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(64 * 1024))


def _gone(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


@pytest.mark.parametrize(
    "lost",
    [(_gone, GapReason.OUTBOX_RESTORED), (_garbage, GapReason.OUTBOX_CORRUPT)],
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
            await outbox.seal(_block(index), now=T0 + index, clock_synced=True)
    lose(path)

    start = subprocess.run(
        [sys.executable, "-c", _CUT_SHORT_START, str(path), where, how], cwd=ROOT, check=False
    )
    assert start.returncode == exit_code
    kept = [g for g in EpochJournal.beside(path).owed() if g.epoch == old_epoch]

    async with open_outbox(path, SITE, KEY) as outbox:  # the next start
        new_epoch = outbox.epoch
    assert new_epoch != old_epoch
    # Before: [] (the next start found the journal's epoch, at seq 0 or without chain state,
    # and declared nothing of the old one): seqs 1..6 of it declared by nobody.
    declared = [g for g in _gap_records(path) if g.epoch == old_epoch]
    assert [(g.reason, g.from_seq, g.to_seq) for g in declared] == [(reason, 1, None)]
    assert declared == kept  # as the cut-short start kept it: the same loss at the collector

    async with open_outbox(path, SITE, KEY) as outbox:  # and the one after: nothing again
        assert outbox.epoch == new_epoch
    assert len([g for g in _gap_records(path) if g.epoch == old_epoch]) == 1
