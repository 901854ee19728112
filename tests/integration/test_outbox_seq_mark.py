"""The seq mark beside the outbox follows the file's newest seq, whatever sealed it.

The mark (`<outbox>.seq`, `outbox_seq_mark.SeqMark`) is how a start finds a file that came
back older without its mark (a WAL cut, a copy of the file put back): a file whose newest seq
is below the mark starts a new epoch and declares the seqs after it. A mark behind the file
finds nothing: the seqs between are sealed again with other bytes, a fork of the chain the
collector may hold, and readings those blocks carried are lost with no gap record.

Two ways it fell behind, each shown here with a real outbox file, a consistent copy of it
taken (SQLite's online backup) at the mark, put back without its mark, and opened:
- blocks sealed while making room (thinned or dropped blocks' replacements, at the head) for
  a seal that then did not seal: a split for the broker whose block gave way itself, a seal
  that failed once no more room could be made. Only the caller's own block moved the mark.
- two writers (the agent and `edge-agent backfill`, two processes on one file): each wrote
  its own last seq after its commit, so the slower one put back a lower seq.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from edge_agent.core.losses import LostReadings
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_open import open_outbox
from specs.records import GapReason
from tests.support.outbox_budget import MIB, full_outbox, minute_block, reopened, take_free_pages
from tests.support.outbox_file import first_undelivered, marked_seq, newest_seq
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.records import reading_at
from tests.support.seq_mark_hook import before_the_mark_write
from tests.support.sigkill_writer import ROOT
from tests.support.sqlite_files import online_copy, put_back

pytestmark = pytest.mark.timeout(120)


async def _split_of_a_block_that_gives_way(outbox: Outbox) -> None:
    """The oldest block, too large for the broker: making room for its split thins it."""
    oldest = (await outbox.delivery.undelivered(after=0, limit=1))[0]
    assert not await outbox.delivery.seal_smaller(oldest, 30, now=T0, clock_synced=True)


async def _seal_that_finds_no_room(outbox: Outbox) -> None:
    """A group larger than the budget: room is made round after round, then it fails."""
    batches = [
        tuple(
            reading_at(T0 + 10**6 + group * 4000 + i, (i * 7919 % 10007) / 7.0, point=f"P{i % 50}")
            for i in range(4000)
        )
        for group in range(12)
    ]
    with pytest.raises(sqlite3.OperationalError, match="full"):
        await outbox.seal_many(batches, now=T0 + 999, clock_synced=True)
    # The sealer, stopping on a full disk, counts its readings in the mark.
    await outbox.note_unsealed(LostReadings(48_000, T0 + 10**6, T0 + 10**6 + 47_999))


@pytest.mark.parametrize(
    "lagging", [_split_of_a_block_that_gives_way, _seal_that_finds_no_room], ids=["split", "seal"]
)
async def test_blocks_sealed_while_making_room_move_the_seq_mark(
    tmp_path: Path, lagging: Callable[[Outbox], Awaitable[None]]
) -> None:
    path, snapshot = tmp_path / "outbox.db", tmp_path / "snapshot.db"
    await full_outbox(path)
    assert take_free_pages(path)[1] == 0  # at the budget, no page free
    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        online_copy(path, snapshot)  # at the mark: seq 125 or so (the file's page geometry)
        marked = await marked_seq(path)
        await lagging(outbox)
    epoch, newest = newest_seq(path)
    assert newest > marked[1]  # room was made: replacements sealed at the head
    # Before: the mark stayed at 125 (the file at 126 after the split, 144 after the seal).
    assert await marked_seq(path) == (epoch, newest)

    put_back(path, snapshot)
    # Before: the copy (seq 125, not below the mark) opened in the same epoch, and its next
    # seal took seq 126 again with other bytes.
    new_epoch, gaps = await reopened(path)
    assert new_epoch != epoch
    restored = [g for g in gaps if g.reason == GapReason.OUTBOX_RESTORED]
    # From its lowest undelivered seq: the blocks sealed again under the new epoch never come
    # in this one (`test_outbox_rolled_back_holes`), nothing lost; nor the lost ones past 125.
    assert [(g.epoch, g.from_seq, g.to_seq, g.lost) for g in restored] == [
        (epoch, first_undelivered(snapshot, epoch), marked[1], 0),
        (epoch, marked[1] + 1, None, None),
    ]


_OTHER_WRITER = """
import asyncio, sys
from pathlib import Path
from edge_agent.shell.outbox_open import open_outbox
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.records import reading_at

async def main() -> None:
    async with open_outbox(Path(sys.argv[1]), SITE, KEY) as outbox:
        await outbox.seal((reading_at(T0 + 5000, 1.0),), now=T0, clock_synced=True)

asyncio.run(main())
"""


async def test_a_second_writer_never_moves_the_seq_mark_back(tmp_path: Path) -> None:
    path, snapshot = tmp_path / "outbox.db", tmp_path / "snapshot.db"
    raced: list[int] = []

    def other_writer_seals(seq: int) -> None:
        # The agent's seal is committed, its mark not written yet: the worst moment for
        # another process (an import, `edge-agent backfill`) to seal on the same file.
        raced.append(seq)
        online_copy(path, snapshot)
        subprocess.run([sys.executable, "-c", _OTHER_WRITER, str(path)], cwd=ROOT, check=True)

    async with open_outbox(path, SITE, KEY) as outbox:
        for index in range(3):
            await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)
        with before_the_mark_write(other_writer_seals):
            await outbox.seal(minute_block(3), now=T0 + 3, clock_synced=True)
        epoch = outbox.epoch
    assert raced == [4]
    assert newest_seq(path) == (epoch, 5)  # the other writer's block
    # Before: (epoch, 4): the agent's write, after the other writer's, put the mark back.
    assert await marked_seq(path) == (epoch, 5)

    put_back(path, snapshot)
    # Before: the copy (seq 4) opened in the same epoch: seq 5 sealed again, other bytes.
    new_epoch, gaps = await reopened(path)
    assert new_epoch != epoch
    assert [(g.reason, g.epoch, g.from_seq, g.to_seq, g.lost) for g in gaps] == [
        (GapReason.OUTBOX_RESTORED, epoch, 1, 4, 0),  # none delivered: 1..4 sealed again
        (GapReason.OUTBOX_RESTORED, epoch, 5, None, None),  # 5 lost
    ]
