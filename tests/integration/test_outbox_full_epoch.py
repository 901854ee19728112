"""A new epoch on a full outbox (at its budget, no page free) makes room as every seal does.

The first block of a new epoch (its gap records) and the undelivered blocks of the older
epoch sealed again under it are seals at the head like any other: a full file makes room for
them first (`RoomMaker.sealing`). Before, both met 'database or disk is full': a file found
rolled back at a start (a WAL cut, a copy put back) at its budget never opened, the agent
exiting 1 with OutboxUnavailableError at every start (a site offline for weeks has a full
outbox by design), and a rollback an ACK proved failed in the ACK handler the same way.
A chunk sealed again is sealed once its rows are gone, in the pages they freed: it needs no
room beside them, and no reading is thinned for it. Room made for a new epoch's first block is
sealed in the epoch left, at the seqs a file found rolled back lost: a start cut short before
that block commits must leave none of them undeclared (the journal keeps the first).
Real outbox files of a 1 MiB budget, every free page taken (`tests/support/outbox_budget.py`).
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import Final

import pytest

from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_recovery import declared_gap
from edge_agent.shell.outbox_space import SpaceBudget
from specs.records import GapReason, GapRecord
from tests.support.outbox_budget import (
    MIB,
    full_outbox,
    minute_block,
    reopened,
    room_made,
    take_free_pages,
)
from tests.support.outbox_file import (
    committed_gap_records,
    first_undelivered,
    gap_ranges,
    marked_seq,
    newest_seq,
)
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.records import reading_at
from tests.support.sigkill_writer import ROOT
from tests.support.sqlite_files import online_copy, put_back

pytestmark = pytest.mark.timeout(120)

AT_BUDGET: Final = (SpaceBudget(MIB).max_pages, 0)  # (pages, pages free)
# Less than a block of one gap record takes in a leaf page of `blocks` (a one-reading block
# takes 642 bytes there).
_NO_ROOM: Final = 300


def _last_leaf_room(path: Path) -> int:
    """Bytes unused in the last leaf page of `blocks`, where the next block's row goes."""
    with closing(sqlite3.connect(path)) as db:
        row = db.execute(
            "SELECT unused FROM dbstat WHERE name = 'blocks' AND pagetype = 'leaf'"
            " ORDER BY path DESC LIMIT 1"
        ).fetchone()
    return int(row[0])


async def _full_to_its_last_leaf(path: Path) -> None:
    """A full outbox whose next block, however small, needs a page: none is free.

    One-reading blocks sealed one at a time (room made when needed, as for any seal), every
    free page then taken, until the last leaf page of `blocks` has no room for a block.
    """
    await full_outbox(path)
    for index in range(40):
        if (
            take_free_pages(path, f"filler-{index}") == AT_BUDGET
            and _last_leaf_room(path) < _NO_ROOM
        ):
            return
        async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
            await outbox.seal((reading_at(T0 + 10**5 + index, 1.0),), now=T0, clock_synced=True)
    pytest.fail("no state with the last leaf page full")


def _restored(
    gaps: Iterable[GapRecord],
) -> list[tuple[str | None, int | None, int | None, int | None]]:
    """(epoch, from, to, lost) of each outbox_restored gap record."""
    return [
        (g.epoch, g.from_seq, g.to_seq, g.lost)
        for g in gaps
        if g.reason == GapReason.OUTBOX_RESTORED
    ]


def _epochs(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as db:
        return {str(row[0]) for row in db.execute("SELECT DISTINCT epoch FROM blocks")}


def _integrity(path: Path) -> str:
    with closing(sqlite3.connect(path)) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


async def _rolled_back(path: Path, snapshot: Path) -> tuple[str, int]:
    """The file put back as it was one seal ago (below its mark); its epoch and newest seq."""
    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        online_copy(path, snapshot)
        copied = newest_seq(path)
        await outbox.seal(minute_block(400), now=T0 + 400, clock_synced=True)  # the mark moves on
    put_back(path, snapshot)
    return copied


async def test_a_full_outbox_found_rolled_back_opens_in_a_new_epoch(tmp_path: Path) -> None:
    path, snapshot = tmp_path / "outbox.db", tmp_path / "snapshot.db"
    await _full_to_its_last_leaf(path)
    old_epoch, copied = await _rolled_back(path, snapshot)
    first = first_undelivered(path, old_epoch)
    assert first <= copied
    assert take_free_pages(path, "filler-again") == AT_BUDGET
    assert _last_leaf_room(path) < _NO_ROOM
    before = room_made(path)

    # Before: OutboxUnavailableError ('database or disk is full') at every start, this budget.
    new_epoch, gaps = await reopened(path)
    assert new_epoch != old_epoch
    restored = _restored(gaps)
    # Those sealed again (nothing lost), and the lost seqs.
    assert restored == [(old_epoch, first, copied, 0), (old_epoch, copied + 1, None, None)]
    assert _epochs(path) == {new_epoch}  # every undelivered block sealed again under it
    assert room_made(path) > before  # room made as for any seal, each loss declared
    assert _integrity(path) == "ok"

    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        assert outbox.epoch == new_epoch  # the next start opens it as it is
        sealed = await outbox.seal(minute_block(500), now=T0 + 500, clock_synced=True)
    assert newest_seq(path) == (new_epoch, sealed.seq)  # sealing goes on
    assert _integrity(path) == "ok"


async def test_older_blocks_are_sealed_again_on_a_full_outbox_in_the_room_they_leave(
    tmp_path: Path,
) -> None:
    path, snapshot = tmp_path / "outbox.db", tmp_path / "snapshot.db"
    await full_outbox(path)  # its first block of a new epoch fits in the last leaf page
    old_epoch, _ = await _rolled_back(path, snapshot)
    assert take_free_pages(path) == AT_BUDGET
    before = room_made(path)
    with closing(sqlite3.connect(path)) as db:
        held = db.execute("SELECT sum(readings) FROM blocks").fetchone()[0]

    # Before: OutboxUnavailableError, the 85 blocks of the epoch left met a full outbox.
    new_epoch, _ = await reopened(path)
    assert new_epoch != old_epoch
    assert _epochs(path) == {new_epoch}
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT sum(readings) FROM blocks").fetchone()[0] == held
    # Sealed before their rows went, they took room beside them: 54 blocks thinned (2,410
    # readings dropped) for them.
    assert room_made(path) == before
    assert _integrity(path) == "ok"


async def test_a_rollback_an_ack_proves_starts_a_new_epoch_on_a_full_outbox(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    await _full_to_its_last_leaf(path)
    before = room_made(path)

    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        old_epoch = outbox.epoch
        # As the ACK handler does on a proven rollback (`publisher_acks.AckHandler._release`).
        # Before: sqlite3.OperationalError 'database or disk is full', the epoch not started.
        gap = declared_gap(GapReason.OUTBOX_RESTORED, old_epoch, 1, T0 + 300)
        new_epoch = await outbox.start_new_epoch((gap,), now=T0 + 300, clock_synced=True)
        sealed = await outbox.seal(minute_block(500), now=T0 + 500, clock_synced=True)
    assert new_epoch != old_epoch
    assert (1, None) in gap_ranges(path, GapReason.OUTBOX_RESTORED)  # the old epoch's declared
    assert _epochs(path) == {new_epoch}
    assert newest_seq(path) == (new_epoch, sealed.seq)  # sealing goes on
    assert room_made(path) > before
    assert _integrity(path) == "ok"


# A start found the file rolled back and began a new epoch; making room for that epoch's first
# block committed replacements in the epoch being left, then the start ended before that first
# block, the one declaring the rollback, committed: at its next try the process was killed
# (SIGKILL, no cleanup), or SQLite failed (an I/O error: OutboxUnavailableError, exit 1).
_CUT_SHORT_START = """
import asyncio, os, signal, sqlite3, sys
from pathlib import Path
import edge_agent.shell.outbox as sealing_side
from edge_agent.shell.outbox_open import open_outbox
from tests.support.outbox_budget import MIB
from tests.support.outbox_site import KEY, SITE

first_block = sealing_side.begin_epoch
tries = []

async def begin_epoch(*args, **kwargs):
    tries.append(1)
    if len(tries) > 1:  # room was made for it, committed in the epoch being left
        if sys.argv[2] == "killed":
            os.kill(os.getpid(), signal.SIGKILL)
        raise sqlite3.OperationalError("disk I/O error")
    return await first_block(*args, **kwargs)

sealing_side.begin_epoch = begin_epoch

async def main() -> None:
    async with open_outbox(Path(sys.argv[1]), SITE, KEY, max_bytes=MIB):
        pass

asyncio.run(main())
"""


def _declared(path: Path, epoch: str) -> list[tuple[int, int | None]]:
    """The seq ranges of `epoch` the gap records committed in the file declare."""
    return [
        (g.from_seq, g.to_seq)
        for g in committed_gap_records(path)
        if g.epoch == epoch and g.from_seq is not None
    ]


def _undeclared(seqs: range, declared: list[tuple[int, int | None]]) -> list[int]:
    return [
        seq
        for seq in seqs
        if not any(low <= seq and (high is None or seq <= high) for low, high in declared)
    ]


@pytest.mark.parametrize(("how", "exit_code"), [("killed", -signal.SIGKILL), ("failed", 1)])
async def test_a_new_epoch_cut_short_after_making_room_leaves_no_seq_of_the_old_undeclared(
    tmp_path: Path, how: str, exit_code: int
) -> None:
    path, snapshot = tmp_path / "outbox.db", tmp_path / "snapshot.db"
    await _full_to_its_last_leaf(path)
    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        online_copy(path, snapshot)
        old_epoch, copied = newest_seq(path)
        for index in range(12):  # sealed (and maybe sent) after the copy: lost with it
            await outbox.seal(minute_block(400 + index), now=T0 + 400, clock_synced=True)
    _, marked = await marked_seq(path)
    put_back(path, snapshot)
    first = first_undelivered(path, old_epoch)
    assert first <= copied
    assert take_free_pages(path, "filler-again") == AT_BUDGET
    assert _last_leaf_room(path) < _NO_ROOM

    start = subprocess.run(
        [sys.executable, "-c", _CUT_SHORT_START, str(path), how], cwd=ROOT, check=False
    )
    assert start.returncode == exit_code
    epoch, newest = newest_seq(path)
    assert epoch == old_epoch  # the new epoch's first block never committed
    assert copied < newest < marked  # replacements took seqs the copy lost, below the mark

    new_epoch, gaps = await reopened(path)
    assert new_epoch != old_epoch
    restored = _restored(gaps)
    # From the copy's lowest undelivered seq: those sealed again (nothing lost), then from the
    # first seq the copy lost (as the cut-short start kept it, not past the replacements).
    assert restored == [(old_epoch, first, copied, 0), (old_epoch, copied + 1, None, None)]
    # Before 9da24ad: [copied + 1 .. newest]: the next start declared from newest + 1 only.
    assert _undeclared(range(first, marked + 1), _declared(path, old_epoch)) == []
    assert _epochs(path) == {new_epoch}
    assert _integrity(path) == "ok"
