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
has left the ACK's epoch): the other start's entry stays the latest, its record owed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_sidecars import EpochJournal
from specs.records import Quality, Reading, iso_time
from tests.integration.test_ack_epoch_not_started import _beyond_the_chain
from tests.support.epoch_lock_hook import before_the_epoch_lock
from tests.support.held_process import held_process
from tests.support.publisher_rig import GATEWAY_KEY, SITE, ack_taker
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
        await _beyond_the_chain(acks, second)  # through 8 of a file holding 1..2
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
# epoch there, as its opening does on a file rolled back or replaced); says that epoch.
_OTHER_START = f"""
import asyncio, sys, time
from pathlib import Path
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_recovery import declared_gap
from specs.records import GapReason
from tests.support.publisher_rig import GATEWAY_KEY, SITE

async def main() -> None:
    async with open_outbox(Path(sys.argv[1]), SITE, GATEWAY_KEY) as outbox:
        print("held", flush=True)
        sys.stdin.readline()
        gap = declared_gap(GapReason.OUTBOX_RESTORED, {_EARLIER!r}, 1, time.time())
        started = await outbox.start_new_epoch((gap,), now=time.time(), clock_synced=True)
        print("epoch", started, flush=True)

asyncio.run(main())
"""


async def test_an_epoch_another_process_starts_as_the_rollback_starts_keeps_its_owed_records(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    journal = EpochJournal.beside(path)
    others: list[str] = []

    async def the_other_start() -> None:
        # The agent's start about to take the epoch lock: the other process starts its epoch
        # (under the lock, journaled and committed) and is done first.
        said = await asyncio.to_thread(other.release, "go")
        others.extend(line.split()[1] for line in said if line.startswith("epoch "))

    async with open_outbox(path, SITE, GATEWAY_KEY) as outbox:
        first = outbox.epoch
        for _ in range(2):
            await outbox.seal(_reading(), now=time.time(), clock_synced=True)
        acks = ack_taker(outbox)
        with held_process(_OTHER_START, str(path)) as other, before_the_epoch_lock(the_other_start):
            await _beyond_the_chain(acks, first)  # through 8 of a file holding 1..2
        (theirs,) = others
        # The agent's start finds the file has left the ACK's epoch and starts none
        # (test_ack_epoch_left); before that, it started one after the other's, carrying
        # the other's owed record: owed [(first, 1), (_EARLIER, 1)].
        assert journal.epochs() == (first, theirs)
        assert outbox.epoch == theirs
        owed = [(g.epoch, g.from_seq) for g in journal.owed()]
        # Before 3036e1f: the other start's record dropped, 0 of 1 owed ([(first, 1)] only).
        assert owed == [(_EARLIER, 1)]
