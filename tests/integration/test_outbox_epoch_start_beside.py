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

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import edge_agent.shell.outbox as outbox_module
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_recovery import Healthy, declared_gap, inspect_outbox
from edge_agent.shell.outbox_rewrite import begin_epoch as begin
from edge_agent.shell.outbox_sidecars import EpochJournal, SeqMark
from specs.records import GapReason
from tests.integration.test_outbox_declarations import _block, _gap_records
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.sigkill_writer import ROOT

pytestmark = pytest.mark.timeout(120)

# argv: the outbox. Says "held" once its check of the file is done and waits for a line; once
# open, says the epoch it sealed in.
_OPENING = """
import asyncio, sys
from pathlib import Path
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


@contextmanager
def _opening(path: Path) -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen(
        [sys.executable, "-c", _OPENING, str(path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as second:
        assert second.stdout is not None
        assert second.stdout.readline() == "held\n"
        yield second


def _finish(second: subprocess.Popen[str]) -> list[str]:
    assert second.stdin is not None
    assert second.stdout is not None
    second.stdin.write("go\n")
    second.stdin.close()
    said = second.stdout.read().splitlines()
    assert second.wait(60) == 0
    return [line for line in said if line.startswith("epoch ")]


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
    async with open_outbox(path, SITE, KEY) as agent:
        old = agent.epoch
        for index in range(3):
            await agent.seal(_block(index), now=T0 + index, clock_synced=True)
        with _opening(path) as second:

            async def begin_once_the_opening_is_done(*args: object, **kwargs: object) -> object:
                said.extend(_finish(second))  # the agent's new epoch journaled, not committed
                if cut_short:
                    raise OSError("the agent killed before its new epoch committed")
                return await begin(*args, **kwargs)  # type: ignore[arg-type]

            monkeypatch.setattr(outbox_module, "begin_epoch", begin_once_the_opening_is_done)
            rollback = declared_gap(GapReason.OUTBOX_RESTORED, old, 2, T0)
            if cut_short:
                with pytest.raises(OSError, match="killed"):
                    await agent.start_new_epoch((rollback,), now=T0 + 10, clock_synced=True)
            else:
                await agent.start_new_epoch((rollback,), now=T0 + 10, clock_synced=True)
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
                await agent.seal(_block(index), now=T0 + index, clock_synced=True)
            noted = SeqMark.beside(path).read()
            assert noted is not None
            # Before: (E1, 3): the new epoch's seals never moved the mark.
            assert (noted.epoch, noted.seq) == (new, _last_seq(path))
    before = len(_gap_records(path))
    async with open_outbox(path, SITE, KEY) as restarted:
        declared = [(g.reason, g.epoch, g.from_seq) for g in _gap_records(path)[before:]]
    if cut_short:
        # The rollback's declaration (or one from further back), owed by the start cut short,
        # sealed by the next. Before: nothing declared (the journal at E1 again, nothing owed).
        assert [seq for _, epoch, seq in declared if epoch == old and seq is not None and seq <= 2]
    else:
        # Before: outbox_replaced (expected E1, found E2), both declared lost, a third epoch.
        assert restarted.epoch == new
        assert declared == []
