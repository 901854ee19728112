"""The tally of readings let go unsealed, kept in the seq mark, is declared once and never lost.

A stop on a full disk counts the readings it let go in the seq mark beside the outbox
(`outbox_seq_mark.SeqMark`, written in place: no new disk block needed); the agent's next
start names them in one `disk_full` gap record. Two processes may hold one outbox (the agent,
`edge-agent backfill`), and each wrote the mark from its own copy of the tally, read at its
open: a backfill that opened before the agent's stop put back an empty tally over the agent's
(never declared), and one that opened before the agent's start and its declaration put the
declared tally back (declared again at the following start). Shown here with a second real
process on the same file, as a backfill holds it: opened, then sealing at a chosen moment.

The mark's epoch and seq, which a start matches against the file's to find a WAL cut, must
not go back to an older epoch either: a stop on a full disk, changing the tally alone, wrote
the agent's last sealed epoch and seq over those of an epoch another process had started on
the file since, and so did a seal's write that came after that epoch's first seals.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from edge_agent.core.losses import LostReadings
from edge_agent.core.plan import OUTBOX_SEQ_MARK_TIMEOUT
from edge_agent.core.seq_mark_record import Mark
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_seq_mark import SeqMark
from specs.records import GapReason, GapRecord
from tests.support.held_process import held_process
from tests.support.outbox_file import committed_records, marked_seq, newest_seq
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.records import reading_at
from tests.support.sealer_rig import running_sealer
from tests.support.seq_mark_hook import before_the_mark_write
from tests.support.sqlite_files import online_copy, put_back

pytestmark = pytest.mark.timeout(120)

LET_GO = LostReadings(500, T0 + 100, T0 + 599)

# A second process on the outbox, as `edge-agent backfill` is: it opens the file (and says
# so), then seals one block once told to (a line on its stdin), and ends.
_BACKFILL = """
import asyncio, sys
from pathlib import Path
from edge_agent.shell.outbox_open import open_outbox
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.records import reading_at

async def main() -> None:
    async with open_outbox(Path(sys.argv[1]), SITE, KEY) as outbox:
        print("open", flush=True)
        sys.stdin.readline()
        await outbox.seal((reading_at(T0 + 9000, 1.0),), now=T0, clock_synced=True)

asyncio.run(main())
"""


@contextmanager
def _second_process(script: str, path: Path, says: str) -> Iterator[str]:
    """A second process on the outbox running `script`, once it said `says` (the line it said);
    it seals and ends when the block is left."""
    with held_process(script, str(path), says=says, on_leave="seal") as held:
        yield held.said


def _backfill_holding(path: Path) -> AbstractContextManager[str]:
    """The second process, its outbox open; it seals and ends when the block is left."""
    return _second_process(_BACKFILL, path, "open")


async def _tally(path: Path) -> int:
    mark = await SeqMark.beside(path, OUTBOX_SEQ_MARK_TIMEOUT).read()
    assert mark is not None
    return mark.unsealed.count


async def _agent_starts(path: Path) -> None:
    """A start as the agent's: its sealer takes the tally and names it with its first block."""
    async with (
        open_outbox(path, SITE, KEY) as outbox,
        running_sealer(outbox, count_lost=True) as run,
    ):
        await run.queue.put(reading_at(T0 + 8000, 2.0))
        await run.until_sealed(1)


def _declared(path: Path) -> list[int | None]:
    """The `disk_full` gap records the file holds: how many readings each names."""
    return [
        record.lost
        for record in committed_records(path)
        if isinstance(record, GapRecord) and record.reason == GapReason.DISK_FULL
    ]


async def test_a_tally_noted_while_a_backfill_holds_the_outbox_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal((reading_at(T0, 1.0),), now=T0, clock_synced=True)
        with _backfill_holding(path):  # opened with no tally; seals once the agent stopped
            # The agent's sealer, stopping on a full disk, counts what it let go.
            await outbox.note_unsealed(LET_GO)
            assert await _tally(path) == LET_GO.count
    # Before: 0, the backfill's seal wrote its own (empty) tally over the agent's.
    assert await _tally(path) == LET_GO.count
    await _agent_starts(path)
    # Before: [] (the readings let go were never declared).
    assert _declared(path) == [LET_GO.count]
    assert await _tally(path) == 0


async def test_a_tally_declared_while_a_backfill_holds_the_outbox_is_not_declared_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal((reading_at(T0, 1.0),), now=T0, clock_synced=True)
        await outbox.note_unsealed(LET_GO)  # the agent stopped on a full disk
    with _backfill_holding(path):  # opened with the tally; seals once the agent declared it
        await _agent_starts(path)
        assert _declared(path) == [LET_GO.count]
        assert await _tally(path) == 0
    # Before: 500, the backfill's seal put the declared tally back.
    assert await _tally(path) == 0
    await _agent_starts(path)
    # Before: [500, 500] (the next start declared it again).
    assert _declared(path) == [LET_GO.count]


# A second process that starts a new epoch on the outbox (as a start that found it rolled back
# does, or the ACK check): it says so with the epoch, then seals one more block in it once told
# to, and ends. Nothing read past that line: its log lines may follow.
_NEW_EPOCH = """
import asyncio, sys
from pathlib import Path
from edge_agent.shell.outbox_open import open_outbox
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.records import reading_at

async def main() -> None:
    async with open_outbox(Path(sys.argv[1]), SITE, KEY) as outbox:
        epoch = await outbox.start_new_epoch((), now=T0, clock_synced=True)
        print("started", epoch, flush=True)
        sys.stdin.readline()
        await outbox.seal((reading_at(T0 + 9500, 1.0),), now=T0, clock_synced=True)

asyncio.run(main())
"""


def _new_epoch_cut_back(path: Path, snapshot: Path) -> str:
    """Another process starts an epoch and seals in it; `snapshot` taken before its last seal."""
    with _second_process(_NEW_EPOCH, path, "started ") as said:
        online_copy(path, snapshot)
    return said.split()[1]


def _restored(path: Path) -> list[tuple[str | None, int | None]]:
    """The `outbox_restored` gap records the file holds: (epoch, from seq)."""
    return [
        (record.epoch, record.from_seq)
        for record in committed_records(path)
        if isinstance(record, GapRecord) and record.reason == GapReason.OUTBOX_RESTORED
    ]


async def test_a_tally_noted_after_another_process_started_an_epoch_keeps_its_mark(
    tmp_path: Path,
) -> None:
    path, snapshot = tmp_path / "outbox.db", tmp_path / "snapshot.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        for index in range(4):
            await outbox.seal((reading_at(T0 + index, 1.0),), now=T0, clock_synced=True)
        first = outbox.epoch
        assert await marked_seq(path) == (first, 4)
        second = _new_epoch_cut_back(path, snapshot)
        newest = newest_seq(path)
        assert newest[0] == second
        assert await marked_seq(path) == newest
        # The agent, which has sealed nothing since, stops on a full disk.
        await outbox.note_unsealed(LET_GO)
    # Before: (first, 4), the epoch and seq this process last sealed, over the other's mark.
    assert await marked_seq(path) == newest
    assert await _tally(path) == LET_GO.count

    put_back(path, snapshot)  # the second epoch's last seal cut off
    await _agent_starts(path)
    # Before: [] (the mark named another epoch: the copy opened as it was, its last seq sealed
    # again with other bytes).
    # From its lowest undelivered seq (5f88df2): 1..2 sealed again, 3 lost.
    assert _restored(path) == [(second, 1), (second, 3)]
    assert _declared(path) == [LET_GO.count]


async def test_a_seq_of_an_older_epoch_never_replaces_a_newer_epochs_mark(tmp_path: Path) -> None:
    path, snapshot = tmp_path / "outbox.db", tmp_path / "snapshot.db"
    started: list[str] = []

    def other_process_starts(_seq: int) -> None:
        # The agent's seal is committed, its mark not written yet: another process starts
        # an epoch on the file meanwhile (the journal names it the newer one).
        started.append(_new_epoch_cut_back(path, snapshot))

    async with open_outbox(path, SITE, KEY) as outbox:
        for index in range(3):
            await outbox.seal((reading_at(T0 + index, 1.0),), now=T0, clock_synced=True)
        with before_the_mark_write(other_process_starts):
            await outbox.seal((reading_at(T0 + 3, 1.0),), now=T0, clock_synced=True)
    [second] = started
    newest = newest_seq(path)
    assert newest[0] == second
    # Before: (first, 4), the agent's write, after the other process's, put the older epoch's
    # seq over the newer one's.
    assert await marked_seq(path) == newest

    put_back(path, snapshot)
    await _agent_starts(path)
    # Before: [] (the copy opened as it was).
    # From its lowest undelivered seq (5f88df2): 1..2 sealed again, 3 lost.
    assert _restored(path) == [(second, 1), (second, 3)]


async def test_a_declaration_takes_off_only_what_it_named(tmp_path: Path) -> None:
    """Two marks on one file (two processes): what one adds, the other's declaration keeps."""
    path = tmp_path / "outbox.db"
    agent = SeqMark.beside(path, OUTBOX_SEQ_MARK_TIMEOUT)
    other = SeqMark.beside(path, OUTBOX_SEQ_MARK_TIMEOUT)
    try:
        await agent.write("e1", 3)
        await agent.let_go("e1", 3, LostReadings(300, T0, T0 + 299))
        noted = await other.read()
        assert noted is not None
        # Added by the other process after the agent read the tally, before it declared.
        await other.let_go("e1", 4, LostReadings(200, T0 + 300, T0 + 499))
        await agent.declared("e1", 3, LostReadings(300, T0, T0 + 299))
        left = await other.read()
        assert left is not None
        # A change to the tally alone notes no seq: 3 stays, the last one a seal noted.
        assert (left.seq, left.unsealed.count) == (3, 200)
        await other.declared("e1", 4, left.unsealed)
        assert await agent.read() == Mark("e1", 3, LostReadings())
    finally:
        await agent.close()
        await other.close()
