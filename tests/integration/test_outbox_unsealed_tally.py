"""The tally of readings let go unsealed, kept in the seq mark, is declared once and never lost.

A stop on a full disk counts the readings it let go in the seq mark beside the outbox
(`outbox_sidecars.SeqMark`, written in place: no new disk block needed); the agent's next
start names them in one `disk_full` gap record. Two processes may hold one outbox (the agent,
`edge-agent backfill`), and each wrote the mark from its own copy of the tally, read at its
open: a backfill that opened before the agent's stop put back an empty tally over the agent's
(never declared), and one that opened before the agent's start and its declaration put the
declared tally back (declared again at the following start). Shown here with a second real
process on the same file, as a backfill holds it: opened, then sealing at a chosen moment.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from edge_agent.core.losses import LostReadings
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_sidecars import Mark, SeqMark
from specs.block import decode_block
from specs.records import GapReason, GapRecord
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.records import reading_at
from tests.support.sealer_rig import running_sealer
from tests.support.sigkill_writer import ROOT

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
def _backfill_holding(path: Path) -> Iterator[subprocess.Popen[str]]:
    """The second process, its outbox open; it seals and ends when the block is left."""
    with subprocess.Popen(
        [sys.executable, "-c", _BACKFILL, str(path)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            assert process.stdout.readline() == "open\n"
            yield process
            process.stdin.write("seal\n")
            process.stdin.flush()
            assert process.wait(timeout=60) == 0
        finally:
            if process.poll() is None:
                process.kill()


def _tally(path: Path) -> int:
    mark = SeqMark.beside(path).read()
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
    with closing(sqlite3.connect(path)) as db:
        payloads = [bytes(row[0]) for row in db.execute("SELECT payload FROM blocks")]
    return [
        record.lost
        for payload in payloads
        for record in decode_block(payload).records
        if isinstance(record, GapRecord) and record.reason == GapReason.DISK_FULL
    ]


async def test_a_tally_noted_while_a_backfill_holds_the_outbox_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal((reading_at(T0, 1.0),), now=T0, clock_synced=True)
        with _backfill_holding(path):  # opened with no tally; seals once the agent stopped
            # The agent's sealer, stopping on a full disk, counts what it let go.
            outbox.note_unsealed(LET_GO)
            assert _tally(path) == LET_GO.count
    # Before: 0, the backfill's seal wrote its own (empty) tally over the agent's.
    assert _tally(path) == LET_GO.count
    await _agent_starts(path)
    # Before: [] (the readings let go were never declared).
    assert _declared(path) == [LET_GO.count]
    assert _tally(path) == 0


async def test_a_tally_declared_while_a_backfill_holds_the_outbox_is_not_declared_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal((reading_at(T0, 1.0),), now=T0, clock_synced=True)
        outbox.note_unsealed(LET_GO)  # the agent stopped on a full disk
    with _backfill_holding(path):  # opened with the tally; seals once the agent declared it
        await _agent_starts(path)
        assert _declared(path) == [LET_GO.count]
        assert _tally(path) == 0
    # Before: 500, the backfill's seal put the declared tally back.
    assert _tally(path) == 0
    await _agent_starts(path)
    # Before: [500, 500] (the next start declared it again).
    assert _declared(path) == [LET_GO.count]


def test_a_declaration_takes_off_only_what_it_named(tmp_path: Path) -> None:
    """Two marks on one file (two processes): what one adds, the other's declaration keeps."""
    path = tmp_path / "outbox.db"
    agent, other = SeqMark.beside(path), SeqMark.beside(path)
    try:
        agent.write("e1", 3)
        agent.let_go("e1", 3, LostReadings(300, T0, T0 + 299))
        noted = other.read()
        assert noted is not None
        # Added by the other process after the agent read the tally, before it declared.
        other.let_go("e1", 4, LostReadings(200, T0 + 300, T0 + 499))
        agent.declared("e1", 3, LostReadings(300, T0, T0 + 299))
        left = other.read()
        assert left is not None
        assert (left.seq, left.unsealed.count) == (4, 200)
        other.declared("e1", 4, left.unsealed)
        assert agent.read() == Mark("e1", 4, LostReadings())
    finally:
        agent.close()
        other.close()
