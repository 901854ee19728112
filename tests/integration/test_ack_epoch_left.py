"""A collector ACK of the epoch another process has moved the outbox off starts no epoch.

`edge-agent backfill` opening the outbox beside the running agent starts a new epoch when the
file looks replaced or rolled back (`outbox_recovery.recovery_gaps`). One way the running
agent gets there itself: its ACK-proven rollback cut short after the journal recorded the new
epoch, before its first block committed (a disk I/O error: `ack_not_recorded`, the agent
stays in its epoch E1), leaves the journal naming an epoch the file never saw, and the next
opening takes the file for another copy (`outbox_replaced`): it starts E3, declares E1 lost
from seq 1 and seals E1's undelivered blocks again under it. The collector's next ACK of E1
passed `on_ack`'s epoch check (the agent's last word on the epoch, E1), was then judged
against E3's chain (`Delivery.chain_position` follows the file) and, `acked_through` above
E3's last seq, taken for a rollback of E3: one more epoch, E3 left for nothing, E1 declared
lost a second time. The same when E3 starts between the judgement and the epoch lock.

Real outbox file; the agent is this test's open outbox fed real collector-signed ACKs into
the real AckTaker; the opening is a real python process calling `open_outbox` as `edge-agent
backfill` does. The agent's cut-short start fails as SQLite does, its first block's seal
raising `disk I/O error` (as in test_outbox_cut_short_start).
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import edge_agent.shell.outbox as sealing_side
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_sidecars import EpochJournal
from edge_agent.shell.publisher_acks import AckTaker
from edge_agent.shell.publisher_lanes import Lanes
from hostkit.backoff import ResendBackoff
from specs.records import Quality, Reading, iso_time
from tests.support.epoch_lock_hook import before_the_epoch_lock
from tests.support.held_process import ROOT
from tests.support.outbox_file import declared_lost
from tests.support.publisher_rig import GATEWAY_KEY, SITE, ack_beyond_the_chain, ack_taker

pytestmark = pytest.mark.timeout(60)

# argv: the outbox. Opens it as `edge-agent backfill` does and says the epoch it is in.
_BACKFILL_OPENS = """
import asyncio, sys
from pathlib import Path
from edge_agent.shell.outbox_open import open_outbox
from tests.support.publisher_rig import GATEWAY_KEY, SITE

async def main() -> None:
    async with open_outbox(Path(sys.argv[1]), SITE, GATEWAY_KEY) as outbox:
        print("epoch", outbox.epoch, flush=True)

asyncio.run(main())
"""


def _backfill_opens(path: Path) -> str:
    """The epoch a real second process's opening of `path` leaves the file in."""
    done = subprocess.run(
        [sys.executable, "-c", _BACKFILL_OPENS, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=True,
    )
    (said,) = [line for line in done.stdout.splitlines() if line.startswith("epoch ")]
    return said.split()[1]


@asynccontextmanager
async def _agent_cut_short(
    path: Path, monkeypatch: pytest.MonkeyPatch, lanes: Lanes, wake: asyncio.Event
) -> AsyncIterator[tuple[AckTaker, str]]:
    """The agent in epoch E1 holding 1..2, its ACK-proven rollback cut short at the first
    block: the journal names an epoch the file never saw. Yields its ACK taker (on `lanes`
    and `wake`) and E1."""
    async with open_outbox(path, SITE, GATEWAY_KEY) as outbox:
        for _ in range(2):
            reading = Reading("T001-LT-01", "WHP-LT", iso_time(time.time()), 1.0, "m", Quality.GOOD)
            await outbox.seal((reading,), now=time.time(), clock_synced=True)
        first = outbox.epoch
        acks = ack_taker(outbox, lanes=lanes, wake=wake)

        async def disk_io_error(*_args: object, **_kwargs: object) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        with monkeypatch.context() as failing, capture_logs() as logs:
            failing.setattr(sealing_side, "begin_epoch", disk_io_error)
            await ack_beyond_the_chain(acks, first)  # through 8 of a file holding 1..2
        assert [e["event"] for e in logs if e["event"] == "ack_not_recorded"] == [
            "ack_not_recorded"
        ]
        journal = EpochJournal.beside(path)
        assert outbox.epoch == first
        assert len(journal.epochs()) == 2
        assert journal.latest() != first
        yield acks, first


async def test_an_ack_of_the_epoch_a_backfill_opening_left_starts_no_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "outbox.db"
    journal = EpochJournal.beside(path)
    lanes, wake = Lanes(4, ResendBackoff(1.0)), asyncio.Event()
    async with _agent_cut_short(path, monkeypatch, lanes, wake) as (acks, first):
        lanes.add_live(2)  # in flight in E1: a new epoch forgets it
        theirs = await asyncio.to_thread(_backfill_opens, path)
        cut = journal.epochs()[1]
        assert journal.epochs() == (first, cut, theirs)  # outbox_replaced: E3 started
        with capture_logs() as logs:
            await ack_beyond_the_chain(acks, first)  # the collector's next ACK of E1
        # Before: (E1, cut, E3, E4), sequence_rollback_detected against E3's chain.
        assert journal.epochs() == (first, cut, theirs)
        events = [e["event"] for e in logs]
        assert "sequence_rollback_detected" not in events
        assert "epoch_started" not in events
        [left] = [e for e in logs if e["event"] == "ack_rejected"]
        assert (left["epoch"], left["outbox_epoch"]) == (first, theirs)
        assert (lanes.is_idle, wake.is_set()) == (True, True)  # E3's blocks sent anew
    # Before: 2 (E3's first block and E4's); now E3's alone.
    assert declared_lost(path, first) == 1


async def test_an_epoch_a_backfill_opening_starts_as_the_rollback_starts_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "outbox.db"
    journal = EpochJournal.beside(path)
    others: list[str] = []

    async def backfill_opens() -> None:
        # The agent's start, its rollback of E1 judged, about to take the epoch lock: the
        # opening starts its epoch first (under the lock, journaled and committed).
        others.append(await asyncio.to_thread(_backfill_opens, path))

    lanes = Lanes(4, ResendBackoff(1.0))
    async with _agent_cut_short(path, monkeypatch, lanes, asyncio.Event()) as (acks, first):
        cut = journal.latest()
        with before_the_epoch_lock(backfill_opens), capture_logs() as logs:
            await ack_beyond_the_chain(acks, first)  # the collector's next ACK of E1
        (theirs,) = others
        # Before: (E1, cut, E3, E4), E4 started on top of the E3 just committed.
        assert journal.epochs() == (first, cut, theirs)
        assert "epoch_started" not in [e["event"] for e in logs]
        [left] = [e for e in logs if e["event"] == "ack_rejected"]
        assert (left["epoch"], left["outbox_epoch"]) == (first, theirs)
    # Before: 2 (E3's first block and E4's); now E3's alone.
    assert declared_lost(path, first) == 1
