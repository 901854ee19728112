"""A rollback an ACK proves carries the journal's still-owed gap records into its new epoch.

An opening that starts an epoch declares the journal's owed records again beside its own
(`outbox_recovery.with_owed`): the first block carrying them may never have reached the
collector. The ACK-driven start journaled its own record only, so a later loss of the file
left the earlier epochs' holes declared by nobody. Real outbox files, a real signed ACK into
the real AckTaker.

The owed records are read under the epoch lock, in the same step as the new epoch's journal
entry: read before it, another process's epoch start in between (`edge-agent backfill`
opening the outbox) had its entry's owed records replaced by the stale list read here. Since
test_ack_epoch_left, such a start in between makes the agent's start none at all (the file
has left the ACK's epoch): the other start's entry stays the latest, its record owed. One cut
short past its journal entry (the file left in the ACK's epoch) lets the agent's go on, and
only the read under the lock carries the other's owed record into the agent's entry.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_sidecars import EpochJournal
from specs.records import Quality, Reading, iso_time
from tests.support.epoch_lock_hook import before_the_epoch_lock
from tests.support.held_process import held_process
from tests.support.publisher_rig import GATEWAY_KEY, SITE, ack_beyond_the_chain, ack_taker
from tests.support.sqlite_files import remove_with_log

pytestmark = pytest.mark.timeout(60)


def _reading() -> tuple[Reading, ...]:
    return (Reading("T001-LT-01", "WHP-LT", iso_time(time.time()), 1.0, "m", Quality.GOOD),)


async def test_an_ack_proven_rollback_keeps_the_owed_records_of_earlier_epochs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, GATEWAY_KEY) as outbox:
        await outbox.seal(_reading(), now=time.time(), clock_synced=True)
        first = outbox.epoch
    remove_with_log(path)
    async with open_outbox(path, SITE, GATEWAY_KEY) as outbox:
        # The new epoch's first block declares the first epoch lost, owed until delivered.
        second = outbox.epoch
        assert [g.epoch for g in EpochJournal.beside(path).owed()] == [first]
        await outbox.seal(_reading(), now=time.time(), clock_synced=True)
        acks = ack_taker(outbox)
        await ack_beyond_the_chain(acks, second)  # through 8 of a file holding 1..2
        assert outbox.epoch != second
    # Before: [second] only; a loss of the file now left the first epoch declared by nobody.
    assert sorted(g.epoch or "" for g in EpochJournal.beside(path).owed()) == sorted(
        [first, second]
    )


# An earlier epoch of this path whose loss the other process's start declares: what made it
# start does not matter here, only that its journal entry owes a record the agent's does not.
_EARLIER = "e0" * 8

# argv: the outbox. Opens it, says "held", and on a line starts a new epoch whose first block
# declares _EARLIER lost from seq 1 (`edge-agent backfill` opening the outbox and starting an
# epoch there, as its opening does on a file rolled back or replaced); says that epoch. On the
# line "cut" that start is cut short past its journal entry, its first block failing as SQLite
# does (disk I/O error): the file stays in its epoch, the journal names the one begun.
_OTHER_START = f"""
import asyncio, sqlite3, sys, time
from pathlib import Path
import edge_agent.shell.outbox as sealing_side
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_recovery import declared_gap
from edge_agent.shell.outbox_sidecars import EpochJournal
from specs.records import GapReason
from tests.support.publisher_rig import GATEWAY_KEY, SITE

async def disk_io_error(*_args: object, **_kwargs: object) -> None:
    raise sqlite3.OperationalError("disk I/O error")

async def main() -> None:
    async with open_outbox(Path(sys.argv[1]), SITE, GATEWAY_KEY) as outbox:
        print("held", flush=True)
        if sys.stdin.readline().strip() == "cut":
            sealing_side.begin_epoch = disk_io_error
        gap = declared_gap(GapReason.OUTBOX_RESTORED, {_EARLIER!r}, 1, time.time())
        try:
            await outbox.start_new_epoch((gap,), now=time.time(), clock_synced=True)
        except sqlite3.OperationalError:
            pass
        print("epoch", EpochJournal.beside(Path(sys.argv[1])).latest(), flush=True)

asyncio.run(main())
"""


async def _rollback_beside(tmp_path: Path, other_start: str) -> tuple[str, str, str]:
    """The agent's outbox holding 1..2 in its first epoch, a rollback of it proven by an ACK
    through 8; as its start is about to take the epoch lock, the other process's start goes
    on (`other_start`: "go", or "cut" short) and is done first. The first epoch, the other's,
    and the file's epoch after."""
    path = tmp_path / "outbox.db"
    others: list[str] = []

    async def the_other_start() -> None:
        said = await asyncio.to_thread(other.release, other_start)
        others.extend(line.split()[1] for line in said if line.startswith("epoch "))

    async with open_outbox(path, SITE, GATEWAY_KEY) as outbox:
        first = outbox.epoch
        for _ in range(2):
            await outbox.seal(_reading(), now=time.time(), clock_synced=True)
        acks = ack_taker(outbox)
        with held_process(_OTHER_START, str(path)) as other, before_the_epoch_lock(the_other_start):
            await ack_beyond_the_chain(acks, first)  # through 8 of a file holding 1..2
        (theirs,) = others
        return first, theirs, outbox.epoch


async def test_an_epoch_another_process_starts_as_the_rollback_starts_keeps_its_owed_records(
    tmp_path: Path,
) -> None:
    journal = EpochJournal.beside(tmp_path / "outbox.db")
    first, theirs, now_in = await _rollback_beside(tmp_path, "go")
    # The agent's start finds the file has left the ACK's epoch and starts none
    # (test_ack_epoch_left); before that, it started one after the other's, carrying
    # the other's owed record: owed [(first, 1), (_EARLIER, 1)].
    assert journal.epochs() == (first, theirs)
    assert now_in == theirs
    owed = [(g.epoch, g.from_seq) for g in journal.owed()]
    # Before 3036e1f: the other start's record dropped, 0 of 1 owed ([(first, 1)] only).
    assert owed == [(_EARLIER, 1)]


async def test_an_epoch_start_cut_short_beside_the_rollback_has_its_owed_records_carried(
    tmp_path: Path,
) -> None:
    # The other start cut short past its journal entry: the file stays in the ACK's epoch and
    # the agent's start goes on, its entry replacing the other's. What the other's owes is read
    # under the epoch lock (3036e1f), so the agent's entry carries it.
    journal = EpochJournal.beside(tmp_path / "outbox.db")
    first, theirs, now_in = await _rollback_beside(tmp_path, "cut")
    assert journal.epochs() == (first, theirs, now_in)
    owed = [(g.epoch, g.from_seq) for g in journal.owed()]
    # Read before the lock (the list then: none): [(first, 1)] only, _EARLIER's loss owed by
    # no entry, declared by nobody if the file is lost before this epoch's first block is ACKed.
    assert owed == [(first, 1), (_EARLIER, 1)]
