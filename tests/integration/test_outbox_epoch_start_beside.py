"""An outbox opened (`edge-agent backfill`) while the running agent starts a new epoch.

The agent's ACK-proven rollback (`Outbox.start_new_epoch`) journals its new epoch before the
epoch's first block commits. An opening that checked the file (journal and file at E1) just
before must not, at the end of its open, journal E1 again: that moved E1 after E2 and wiped
what E2's first block owes, so a start cut short lost the rollback's declaration, and once E2
committed the seq mark took E1 for the newer epoch and stopped moving.
Real outbox file; the agent is this test's open outbox, the opening a real python subprocess
held by lines on its stdin at a hook just after its check of the file.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

import edge_agent.shell.outbox as outbox_module
import edge_agent.shell.outbox_epoch_lock as epoch_lock
from edge_agent.core.chain import SealedBlock
from edge_agent.core.plan import OUTBOX_SEQ_MARK_TIMEOUT
from edge_agent.shell.outbox_epoch_lock import EpochLock
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_recovery import (
    Healthy,
    OutboxUnavailableError,
    declared_gap,
    inspect_outbox,
)
from edge_agent.shell.outbox_rewrite import begin_epoch as begin
from edge_agent.shell.outbox_seq_mark import SeqMark
from edge_agent.shell.outbox_sidecars import EpochJournal
from specs.records import GapReason
from tests.support.held_process import Held, held_process
from tests.support.outbox_budget import minute_block
from tests.support.outbox_file import committed_gap_records
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.sigkill_writer import ROOT
from tests.support.sqlite_files import online_copy, put_back

pytestmark = pytest.mark.timeout(120)

# argv: the outbox. Says "held" once its check of the file is done and waits for a line; once
# open, says the epoch it sealed in.
_OPENING = """
import asyncio, sys
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any
import edge_agent.shell.outbox_open as opening
from tests.support.outbox_site import KEY, SITE

checked = opening.recovery_gaps

def check_then_hold(*args, **kwargs):
    found = checked(*args, **kwargs)
    print("held", flush=True)
    sys.stdin.readline()
    return found

opening.recovery_gaps = check_then_hold

async def main() -> None:
    async with opening.open_outbox(Path(sys.argv[1]), SITE, KEY) as outbox:
        print("epoch", outbox.epoch, flush=True)

asyncio.run(main())
"""


def _opening(path: Path) -> AbstractContextManager[Held]:
    return held_process(_OPENING, str(path))


def _finish(second: Held) -> list[str]:
    return [line for line in second.release("go") if line.startswith("epoch ")]


def _last_seq(path: Path) -> int:
    found = inspect_outbox(path)
    assert isinstance(found, Healthy)
    return found.last_seq


@pytest.mark.parametrize("cut_short", [False, True])
async def test_an_opening_beside_an_epoch_start_does_not_journal_the_old_epoch_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut_short: bool
) -> None:
    path = tmp_path / "outbox.db"
    journal = EpochJournal.beside(path)
    said: list[str] = []
    # The agent's start reached its first block, or (the opening holding the epoch lock) waits.
    reached, finished = asyncio.Event(), asyncio.Event()
    wait = epoch_lock.waited

    async def waited(*args: Any) -> None:
        reached.set()
        await wait(*args)

    async def begin_once_the_opening_is_done(*args: Any, **kwargs: Any) -> SealedBlock:
        reached.set()  # the agent's new epoch journaled, not committed
        await finished.wait()
        if cut_short:
            raise OSError("the agent killed before its new epoch committed")
        return await begin(*args, **kwargs)

    monkeypatch.setattr(epoch_lock, "waited", waited)
    async with open_outbox(path, SITE, KEY) as agent:
        old = agent.epoch
        for index in range(3):
            await agent.seal(minute_block(index), now=T0 + index, clock_synced=True)
        with _opening(path) as second:
            monkeypatch.setattr(outbox_module, "begin_epoch", begin_once_the_opening_is_done)
            rollback = declared_gap(GapReason.OUTBOX_RESTORED, old, 2, T0)
            start = asyncio.create_task(
                agent.start_new_epoch((rollback,), now=T0 + 10, clock_synced=True)
            )
            await reached.wait()
            said.extend(_finish(second))
            finished.set()
            if cut_short:
                with pytest.raises(OSError, match="killed"):
                    await start
            else:
                await start
            monkeypatch.setattr(outbox_module, "begin_epoch", begin)
        assert said == [f"epoch {old}"]
        new = journal.latest()
        assert new is not None
        assert new != old
        # Before: [E2, E1], nothing owed (the rollback's record wiped).
        assert journal.epochs() == (old, new)
        assert [(g.epoch, g.from_seq) for g in journal.owed()] == [(old, 2)]
        if not cut_short:
            for index in range(3, 6):
                await agent.seal(minute_block(index), now=T0 + index, clock_synced=True)
            noted = await SeqMark.beside(path, OUTBOX_SEQ_MARK_TIMEOUT).read()
            assert noted is not None
            # Before: (E1, 3): the new epoch's seals never moved the mark.
            assert (noted.epoch, noted.seq) == (new, _last_seq(path))
    before = len(committed_gap_records(path))
    async with open_outbox(path, SITE, KEY) as restarted:
        declared = [(g.reason, g.epoch, g.from_seq) for g in committed_gap_records(path)[before:]]
    if cut_short:
        # The rollback's declaration (or one from further back), owed by the start cut short,
        # sealed by the next. Before: nothing declared (the journal at E1 again, nothing owed).
        assert [seq for _, epoch, seq in declared if epoch == old and seq is not None and seq <= 2]
    else:
        # Before: outbox_replaced (expected E1, found E2), both declared lost, a third epoch.
        assert restarted.epoch == new
        assert declared == []


# argv: the outbox. Says the epoch it opened in.
_PLAIN_OPENING = """
import asyncio, sys
from contextlib import AbstractContextManager
from pathlib import Path
from edge_agent.shell.outbox_open import open_outbox
from tests.support.outbox_site import KEY, SITE

async def main() -> None:
    async with open_outbox(Path(sys.argv[1]), SITE, KEY) as outbox:
        print("epoch", outbox.epoch, flush=True)

asyncio.run(main())
"""


async def test_an_opening_during_an_epoch_start_waits_for_its_first_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "outbox.db"
    journal = EpochJournal.beside(path)
    openings: list[subprocess.Popen[str]] = []
    said: list[str] = []

    async def begin_beside_an_opening(*args: Any, **kwargs: Any) -> SealedBlock:
        # The journal names the new epoch, the file the old: an opening starts now, and goes
        # on until it waits for the epoch lock (or, before, has opened).
        second = subprocess.Popen(
            [sys.executable, "-c", _PLAIN_OPENING, str(path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        openings.append(second)
        assert second.stdout is not None
        line = ""
        while not (line.startswith("epoch ") or "outbox_epoch_lock_busy" in line):
            line = second.stdout.readline()
            assert line, "the opening ended before opening"
        said.append(line.rstrip("\n"))
        return await begin(*args, **kwargs)

    try:
        async with open_outbox(path, SITE, KEY) as agent:
            old = agent.epoch
            for index in range(3):
                await agent.seal(minute_block(index), now=T0 + index, clock_synced=True)
            monkeypatch.setattr(outbox_module, "begin_epoch", begin_beside_an_opening)
            rollback = declared_gap(GapReason.OUTBOX_RESTORED, old, 1, T0)
            new = await agent.start_new_epoch((rollback,), now=T0 + 10, clock_synced=True)
            monkeypatch.setattr(outbox_module, "begin_epoch", begin)
            (second,) = openings
            assert second.stdout is not None
            said.extend(second.stdout.read().splitlines())
            assert second.wait(60) == 0
            # Before: the opening took the file for another copy (outbox_replaced), declared
            # both epochs lost from 1 and opened a third, which begin_epoch then overwrote.
            assert [line for line in said if line.startswith("epoch ")] == [f"epoch {new}"]
            assert not [line for line in said if "outbox_replaced" in line]
            assert journal.epochs() == (old, new)
            for index in range(3, 6):
                await agent.seal(minute_block(index), now=T0 + index, clock_synced=True)
            noted = await SeqMark.beside(path, OUTBOX_SEQ_MARK_TIMEOUT).read()
            assert noted is not None
            assert (noted.epoch, noted.seq) == (new, _last_seq(path))
    finally:
        for opening in openings:
            if opening.poll() is None:
                opening.kill()
            opening.wait()
            if opening.stdout is not None:
                opening.stdout.close()
    before = len(committed_gap_records(path))
    async with open_outbox(path, SITE, KEY) as restarted:
        assert restarted.epoch == new
    assert committed_gap_records(path)[before:] == []


async def test_a_wait_for_the_epoch_lock_given_up_says_so_and_leaves_the_lock_free(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db.epoch-lock"
    other = os.open(path, os.O_RDWR | os.O_CREAT)  # another process's hold, as flock sees it
    fcntl.flock(other, fcntl.LOCK_EX)
    with pytest.raises(OutboxUnavailableError, match="another process has been starting"):
        async with EpochLock(path, 0).held():
            pass
    os.close(other)
    # The given-up wait's thread takes the lock once free and lets it go at once.
    async with EpochLock(path, 60).held():
        probe = os.open(path, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)


async def test_a_start_whose_epoch_lock_cannot_be_made_still_starts_its_new_epoch(
    tmp_path: Path,
) -> None:
    # The lock file cannot be opened (here a folder in its place; on a site, a read-only
    # filesystem or one left by `sudo edge-agent backfill`, 0600 root): the opening goes on
    # unserialised, and the new epoch it starts on a rolled-back file must take the lock again
    # as its holder. Before: the start waited on the process's own turn for good.
    path = tmp_path / "outbox.db"
    snapshot = tmp_path / "snapshot.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        old = outbox.epoch
        for index in range(3):
            await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)
        online_copy(path, snapshot)
        for index in range(3, 5):
            await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)
    put_back(path, snapshot)  # rolled back below its seq mark: a new epoch at the next start
    path.with_name(path.name + ".epoch-lock").unlink()
    path.with_name(path.name + ".epoch-lock").mkdir()
    async with asyncio.timeout(30), open_outbox(path, SITE, KEY) as outbox:
        assert outbox.epoch != old
    assert [(g.reason, g.epoch) for g in committed_gap_records(path)][:1] == [
        (GapReason.OUTBOX_RESTORED, old)
    ]
