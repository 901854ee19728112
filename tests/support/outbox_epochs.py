"""Outbox epochs as a site's life makes them: sealed, copied and put back, or cut short.

`sealed_epoch` is a start that seals blocks; `copy_put_back` leaves a file in an older epoch
beside the journal and mark of a newer one; `declared_by_the_next_start` tells what a start
then declares; `CUT_SHORT_START` is a start run as a real python
subprocess (`python -c`, from the repository root), SIGKILLed or failing as SQLite does at a
hook before its first block committed.
"""

from __future__ import annotations

from pathlib import Path

from edge_agent.shell.outbox_open import open_outbox
from tests.support.outbox_budget import minute_block
from tests.support.outbox_file import committed_gap_records
from tests.support.outbox_site import KEY, SITE, T0
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


async def sealed_epoch(path: Path, blocks: int, first: int) -> str:
    """A start that seals `blocks` blocks (sealed, maybe sent); the epoch they are in."""
    async with open_outbox(path, SITE, KEY) as outbox:
        for index in range(first, first + blocks):
            await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)
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


async def declared_by_the_next_start(path: Path) -> list[str | None]:
    """The epochs the outbox's gap records declare once another start has opened it."""
    async with open_outbox(path, SITE, KEY):
        pass
    return [g.epoch for g in committed_gap_records(path)]
