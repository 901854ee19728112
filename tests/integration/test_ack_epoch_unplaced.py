"""An ACK of an epoch left for one the epoch journal does not place is dropped, none declared.

The agent tells why the outbox file is in another epoch than a collector ACK's by the epoch
journal (test_ack_epoch_left, test_ack_outbox_restored_under_agent): another process's start
(`edge-agent backfill`) is entered after the ACK's epoch, a copy put back is in one entered
before it. The journal is advisory, though: its write failing on a full disk
(`epoch_journal_not_written`) leaves a start that still commits its epoch E2 unnamed, and its
16 entries let the oldest go. Such an E2 was taken for a copy put back: the ACK of E1 in
flight until the agent followed E2 started E3, declaring E2 lost from seq 1 (falsely: E1's
readings are sealed again in E2, and E2's own are sealed again in E3) and E1 a second time.
Now an epoch the journal does not place makes the ACK dropped as before b84403b
(`ack_rejected`, plus `ack_epoch_unplaced` with both epochs); a copy put back is declared by
the next opening (`outbox_recovery.recovery_gaps`). The same when that start commits between
the ACK's judgement as a rollback and the agent's start taking the epoch lock.

Real outbox file; the other process's start is a second connection opened as `open_outbox`
opens it, its journal write failing as a full disk makes `replace_file` fail (ENOSPC); a real
collector-signed ACK into the real AckTaker.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

import edge_agent.shell.outbox_sidecars as sidecars
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_recovery import declared_gap
from edge_agent.shell.outbox_sidecars import EpochJournal
from edge_agent.shell.publisher_lanes import Lanes
from hostkit.backoff import ResendBackoff
from specs.records import GapReason
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


def _disk_full(*_args: object, **_kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


async def _other_start_unjournaled(path: Path, left: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Another process's start leaving `left` (as backfill's opening), its journal write
    failing on a full disk; the epoch it committed."""
    async with open_outbox(path, SITE, GATEWAY_KEY) as other:
        with monkeypatch.context() as full:
            full.setattr(sidecars, "replace_file", _disk_full)
            now = time.time()
            return await other.start_new_epoch(
                [declared_gap(GapReason.OUTBOX_RESTORED, left, 1, now)],
                now=now,
                clock_synced=True,
            )


def _dropped(logs: list[MutableMapping[str, Any]], first: str, theirs: str) -> None:
    """What `logs` say once the ACK of `first` found the file in `theirs`, unjournaled."""
    events = [e["event"] for e in logs]
    # Before: outbox_replaced, the agent's epoch E3 started.
    assert "outbox_replaced" not in events
    assert {e["epoch"] for e in logs if e["event"] == "epoch_started"} <= {theirs}
    [unplaced] = [e for e in logs if e["event"] == "ack_epoch_unplaced"]
    assert (unplaced["log_level"], unplaced["epoch"]) == ("warning", first)
    assert unplaced["outbox_epoch"] == theirs
    [rejected] = [e for e in logs if e["event"] == "ack_rejected"]
    assert rejected["reason"] == "for an epoch the outbox has left"


async def test_an_ack_of_an_epoch_left_for_one_the_journal_lacks_declares_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "outbox.db"
    lanes, wake = Lanes(4, ResendBackoff(1.0)), asyncio.Event()
    async with open_outbox(path, SITE, GATEWAY_KEY) as agent:
        for value in (1.0, 2.0, 3.0):
            await seal_now(agent, value)
        first = agent.epoch
        _, stored = await agent.delivery.chain_position(1)
        acks = ack_taker(agent, lanes=lanes, wake=wake)
        lanes.add_live(3)  # in flight in E1: a new epoch forgets it
        theirs = await _other_start_unjournaled(path, first, monkeypatch)
        assert EpochJournal.beside(path).epochs() == (first,)  # E2 not named
        with capture_logs() as logs:
            await ack_stored_through(acks, first, 1, stored)  # the ACK of E1 in flight
        _dropped(logs, first, theirs)
        assert agent.epoch == theirs
        assert (lanes.is_idle, wake.is_set()) == (True, True)  # E2's blocks sent anew
    # Before: E2 declared lost 1 time, E1 2 times (E2's first block and E3's).
    assert (declared_lost(path, theirs), declared_lost(path, first)) == (0, 1)


async def test_an_unjournaled_epoch_started_as_the_rollback_starts_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "outbox.db"
    others: list[str] = []
    async with open_outbox(path, SITE, GATEWAY_KEY) as agent:
        for value in (1.0, 2.0):
            await seal_now(agent, value)
        first = agent.epoch

        async def other_starts() -> None:
            # The rollback of E1 judged, the agent's start about to take the epoch lock.
            others.append(await _other_start_unjournaled(path, first, monkeypatch))

        with before_the_epoch_lock(other_starts), capture_logs() as logs:
            await ack_beyond_the_chain(ack_taker(agent), first)  # the collector holds E1 to 8
        (theirs,) = others
        _dropped(logs, first, theirs)
        assert (agent.epoch, EpochJournal.beside(path).epochs()) == (theirs, (first,))
    # Before: E2 declared lost 1 time, E1 2 times (the under-lock check's outbox_replaced).
    assert (declared_lost(path, theirs), declared_lost(path, first)) == (0, 1)
