"""Outbox epochs as a site's life makes them: sealed, copied and put back, or cut short.

`sealed_epoch` is a start that seals blocks (`K_BLOCKS` from `K_FIRST`: the epoch K a start
abandoning a copy put back seals); `copy_put_back` leaves a file in an older epoch beside the
journal and mark of a newer one; `abandoned_with_a_proof` is a start abandoning it whose journal
entry says it sealed nothing, and `k_sealed_then_put_back` what follows once the file shows K;
`declared_by_the_next_start` (`declared_once_put_back_again`) tells what a start then
declares; `CUT_SHORT_START` is a start run as a real python subprocess (`python -c`, from the
repository root, by `cut_short_start`), SIGKILLed or failing as SQLite does at a hook before
its first block committed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_sidecars import EpochJournal
from tests.support.outbox_budget import minute_block
from tests.support.outbox_file import committed_gap_records
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.sigkill_writer import ROOT
from tests.support.sqlite_files import online_copy, put_back, remove_with_log

# argv: the outbox, where the start is cut short, how. `journal`: right after the journal
# recorded the new epoch, before the file's chain state committed; `first_block`: the chain
# state committed, at the seal of the first block (the one carrying the gap record);
# `begin_epoch`: a start that abandons the file's epoch, at its new epoch's first block.
CUT_SHORT_START = """
import asyncio, os, signal, sqlite3, sys
from pathlib import Path
import edge_agent.shell.outbox as sealing_side
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_sidecars import EpochJournal
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

async def begin_epoch(*args, **kwargs):
    cut_short()

EpochJournal.record = record
if where == "first_block":
    Outbox.seal = seal
if where == "begin_epoch":
    sealing_side.begin_epoch = begin_epoch

async def main() -> None:
    async with open_outbox(path, SITE, KEY):
        pass

asyncio.run(main())
"""


def cut_short_start(path: Path, where: str, how: str) -> int:
    """CUT_SHORT_START on `path`, cut short `where` as `how` says, run to its end: its exit
    code (-SIGKILL when `killed`, 1 when `failed`)."""
    argv = [sys.executable, "-c", CUT_SHORT_START, str(path), where, how]
    return subprocess.run(argv, cwd=ROOT, check=False).returncode


# The blocks an epoch K seals (`seal_blocks(outbox, K_BLOCKS, K_FIRST)`), none delivered.
K_BLOCKS = 4
K_FIRST = 200


async def seal_blocks(outbox: Outbox, blocks: int, first: int) -> None:
    """`blocks` minute blocks from index `first` sealed in the outbox's epoch."""
    for index in range(first, first + blocks):
        await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)


async def sealed_epoch(path: Path, blocks: int, first: int) -> str:
    """A start that seals `blocks` blocks (sealed, maybe sent); the epoch they are in."""
    async with open_outbox(path, SITE, KEY) as outbox:
        await seal_blocks(outbox, blocks, first)
        return outbox.epoch


async def copy_put_back(path: Path, copy: Path) -> tuple[str, str]:
    """Epoch B sealed and copied, the file gone, epoch A sealed, the copy put back: (B, A).

    A's first block and 5 more (maybe sent); the copy of B beside A's journal and mark.
    """
    copied = await sealed_epoch(path, 3, 0)
    online_copy(path, copy)
    remove_with_log(path)
    latest = await sealed_epoch(path, 5, 100)
    put_back(path, copy)
    return copied, latest


async def abandoned_with_a_proof(path: Path) -> str:
    """A start that abandons a copy put back for K, its journal entry the proof that K sealed
    nothing (what the start wrote as its first block failed, its commit's fate unknown): K."""
    async with open_outbox(path, SITE, KEY) as outbox:
        abandoning = outbox.epoch
    EpochJournal.beside(path).sealed_nothing(abandoning)
    return abandoning


async def declared_by_the_next_start(path: Path) -> list[str | None]:
    """The epochs the outbox's gap records declare once another start has opened it."""
    async with open_outbox(path, SITE, KEY):
        pass
    return [g.epoch for g in committed_gap_records(path)]


async def declared_once_put_back_again(path: Path, copy: Path) -> list[str | None]:
    """`copy` put back into `path` again: the epochs the next start declares."""
    put_back(path, copy)
    return await declared_by_the_next_start(path)


async def k_sealed_then_put_back(path: Path, copy: Path, k: str) -> list[str | None]:
    """An opening finds the file in K and seals K's blocks, the proof that K sealed nothing
    taken back by then (asserted); then `copy` put back again: the epochs the next start
    declares."""
    async with open_outbox(path, SITE, KEY) as outbox:
        assert outbox.epoch == k
        await seal_blocks(outbox, K_BLOCKS, K_FIRST)
    assert not EpochJournal.beside(path).latest_sealed_nothing()
    return await declared_once_put_back_again(path, copy)
