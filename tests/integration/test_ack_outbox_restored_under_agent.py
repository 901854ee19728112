"""An outbox file restored under the running agent: the epoch it lost is declared at the next ACK.

An older copy put back into the live file (`sqlite3 outbox.db ".restore backup.db"`) moves
the file to an epoch the agent left before: the blocks the agent sealed since, in its epoch,
are gone. The collector's next ACK of that epoch then finds the file in another one. Another
process's start (`edge-agent backfill` opening the file: test_ack_epoch_left) does too, and
the ACK is dropped then, that start having declared the epoch lost; told apart by the epoch
journal, where such a start enters its epoch after the ACK's (under the epoch lock, before it
commits). A restored file's epoch is older there (or not there at all): before, the ACK was
dropped all the same, and the epoch left, its readings gone, was declared by nobody. Now a new
epoch declares it lost, as an opening that finds the file replaced does (`outbox_replaced`).

Real outbox file, restored under the agent's open connection with SQLite's backup API (as
the sqlite3 shell's `.restore`); real collector-signed ACKs into the real AckTaker.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_sidecars import EpochJournal
from edge_agent.shell.publisher_acks import AckTaker
from edge_agent.shell.publisher_lanes import Lanes
from hostkit.backoff import ResendBackoff
from tests.support.epoch_lock_hook import before_the_epoch_lock
from tests.support.outbox_file import declared_lost
from tests.support.publisher_rig import (
    GATEWAY_KEY,
    SITE,
    ack_beyond_the_chain,
    ack_stored_through,
    ack_taker,
    seal_now,
)

pytestmark = pytest.mark.timeout(60)


def _copy(source: Path, target: Path) -> None:
    """`source` into `target` through SQLite's backup API, `target` open elsewhere or not."""
    with closing(sqlite3.connect(source)) as reading, closing(sqlite3.connect(target)) as written:
        reading.backup(written)


@dataclass(frozen=True)
class _Agent:
    """The agent in E1 (`second`), `backup` an older copy of its file in E0 (`first`)."""

    path: Path
    backup: Path
    outbox: Outbox
    acks: AckTaker
    lanes: Lanes
    wake: asyncio.Event
    first: str
    second: str

    def restore(self) -> None:
        """The copy put back into the live file, under the agent's open connection."""
        _copy(self.backup, self.path)

    def started_a_new_epoch(self, logs: list[MutableMapping[str, Any]]) -> None:
        """What `logs` say and the outbox shows once the ACK found the file put back."""
        # Before: the ACK dropped (ack_rejected "for an epoch the outbox has left"), no epoch.
        assert "ack_rejected" not in [e["event"] for e in logs]
        [replaced] = [e for e in logs if e["event"] == "outbox_replaced"]
        assert (replaced["epoch"], replaced["expected"]) == (self.first, self.second)
        journal = EpochJournal.beside(self.path)
        assert journal.epochs() == (self.first, self.second, self.outbox.epoch)
        assert (self.lanes.is_idle, self.wake.is_set()) == (True, True)  # sent anew


@asynccontextmanager
async def _agent_in_a_later_epoch(tmp_path: Path) -> AsyncIterator[_Agent]:
    """The agent in E1 holding E0's 1..2 sealed again and three readings, none delivered;
    the copy in E0 holding 1..2."""
    path, backup = tmp_path / "outbox.db", tmp_path / "backup.db"
    lanes, wake = Lanes(4, ResendBackoff(1.0)), asyncio.Event()
    async with open_outbox(path, SITE, GATEWAY_KEY) as outbox:
        for value in (1.0, 2.0):
            await seal_now(outbox, value)
        first = outbox.epoch
        await asyncio.to_thread(_copy, path, backup)
        acks = ack_taker(outbox, lanes=lanes, wake=wake)
        await ack_beyond_the_chain(acks, first)  # a rollback of E0 proven: E1 starts
        for value in (3.0, 4.0, 5.0):
            await seal_now(outbox, value)
        lanes.add_live(4)  # in flight in E1: a new epoch forgets it
        wake.clear()
        yield _Agent(path, backup, outbox, acks, lanes, wake, first, outbox.epoch)


async def test_an_ack_of_the_epoch_a_restored_copy_took_away_declares_it_lost(
    tmp_path: Path,
) -> None:
    async with _agent_in_a_later_epoch(tmp_path) as agent:
        _, stored = await agent.outbox.delivery.chain_position(1)
        await asyncio.to_thread(agent.restore)
        with capture_logs() as logs:
            await ack_stored_through(agent.acks, agent.second, 1, stored)  # E1's 1 stored
        agent.started_a_new_epoch(logs)
    # Before: 0, E1's readings 3..5 gone with no word of it.
    assert declared_lost(agent.path, agent.second) == 1


async def test_a_copy_restored_as_a_rollback_starts_has_its_epoch_declared_lost(
    tmp_path: Path,
) -> None:
    async with _agent_in_a_later_epoch(tmp_path) as agent:

        async def restored() -> None:
            # The rollback of E1 judged, its start about to take the epoch lock.
            await asyncio.to_thread(agent.restore)

        with before_the_epoch_lock(restored), capture_logs() as logs:
            await ack_beyond_the_chain(agent.acks, agent.second)  # the collector holds E1 to 8
        # Before: EpochLeftError under the lock, the ACK dropped.
        agent.started_a_new_epoch(logs)
    # Before: 0, the ACK dropped.
    assert declared_lost(agent.path, agent.second) == 1
