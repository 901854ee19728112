"""A file found rolled back leaves no seq of the epoch it abandons an open hole at the collector.

A start that finds the file below its seq mark (a WAL cut mid-frame, a copy put back) starts a
new epoch: the file's undelivered blocks of the old epoch are sealed again under it, and an
`outbox_restored` gap record declares the old epoch's seqs that will never come. Those sealed
again never come in the old epoch either: the collector, which keeps every seq of (gateway,
epoch) neither stored nor declared below the highest it knows as a hole (asked for in every
ACK, listed by `GET /v1/gaps`), must find them declared too, or they stay holes for good.
The collector's side is its own stream logic (`collector.storage.core.advance`) over what it
stored and what the gap records committed in the real outbox file declare.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from collector.model import StreamState
from collector.storage.core import advance
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_open import open_outbox
from specs.block import decode_block
from specs.records import Reading
from tests.support.outbox_budget import minute_block
from tests.support.outbox_file import committed_gap_records
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.sqlite_files import online_copy, put_back, remove_with_log

pytestmark = pytest.mark.timeout(60)


def _readings_of(path: Path, epoch: str, first: int = 1) -> set[tuple[str, str]]:
    """(point, t) of every reading the blocks of `epoch` from seq `first` on carry."""
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute(
            "SELECT payload FROM blocks WHERE epoch = ? AND seq >= ?", (epoch, first)
        ).fetchall()
    return {
        (record.point, record.t)
        for (payload,) in rows
        for record in decode_block(bytes(payload)).records
        if isinstance(record, Reading)
    }


async def _copy_at_8(path: Path, snapshot: Path) -> str:
    """An outbox of 10 seqs, 1..3 released, and its copy `snapshot` at seq 8; its epoch."""
    async with open_outbox(path, SITE, KEY) as outbox:
        old_epoch = outbox.epoch
        for index in range(3):
            await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)
        # The collector stored 1..3 and said so: released.
        await outbox.delivery.mark_delivered(epoch=old_epoch, through=3, also=None, now=T0 + 3)
        for index in range(3, 8):  # 4..8: a backlog not sent yet (the live lane goes first)
            await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)
        online_copy(path, snapshot)  # the copy, at seq 8
        for index in range(8, 10):  # 9, 10: sent live, stored by the collector, not ACKed yet
            await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)
    return old_epoch


async def test_blocks_of_a_rolled_back_epoch_sealed_again_leave_no_hole_in_it(
    tmp_path: Path,
) -> None:
    path, snapshot = tmp_path / "outbox.db", tmp_path / "snapshot.db"
    old_epoch = await _copy_at_8(path, snapshot)
    backlog = _readings_of(snapshot, old_epoch, first=4)
    put_back(path, snapshot)

    async with open_outbox(path, SITE, KEY) as outbox:  # the next start: a new epoch
        new_epoch = outbox.epoch
    assert new_epoch != old_epoch
    assert backlog <= _readings_of(path, new_epoch)  # 4..8 sealed again: no reading lost

    declared = [
        (g.from_seq, g.to_seq)
        for g in committed_gap_records(path)
        if g.epoch == old_epoch and g.from_seq is not None
    ]
    stored = (1, 2, 3, 9, 10)
    at_collector = advance(StreamState(SITE.gateway, old_epoch), stored, declared)
    # Before: declared [(9, None)], and 4..8 holes at the collector for good (the old epoch
    # never sends again). Not from 1: what the collector holds and said it holds is no loss.
    assert at_collector.missing == ()
    # 4..8 are sealed again under the new epoch, readings and all: declared with nothing lost,
    # and only what the copy lost, 9 on, "lost, unknown". Before: one record from 4, lost null
    # (after a WAL cut with weeks of backlog, thousands of seqs whose readings all came).
    lost = [
        (g.from_seq, g.to_seq, g.lost) for g in committed_gap_records(path) if g.epoch == old_epoch
    ]
    assert lost == [(4, 8, 0), (9, None, None)]


async def test_resealed_seqs_lost_with_the_file_before_the_reseal_are_not_declared_none_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reseal cut short, then the file lost: the old epoch's 4..8 are lost, `lost` unknown.

    The start that found the copy declares 4..8 `lost` 0 in its new epoch's first block (and
    keeps it owed in the journal) before a block is sealed again; killed at the reseal, the
    readings are still only in the old epoch's rows. A next start that finds the file gone
    declares the owed records again: `lost` 0 would say nothing was lost.
    """
    path, snapshot = tmp_path / "outbox.db", tmp_path / "snapshot.db"
    old_epoch = await _copy_at_8(path, snapshot)
    put_back(path, snapshot)

    async def killed(self: Outbox, *, now: float, clock_synced: bool) -> int:
        raise SystemExit("killed at the reseal")

    with monkeypatch.context() as patch:
        patch.setattr(Outbox, "reseal_older_epochs", killed)
        with pytest.raises(SystemExit):
            async with open_outbox(path, SITE, KEY):
                pass
    assert _readings_of(path, old_epoch, first=4)  # not sealed again
    remove_with_log(path)
    async with open_outbox(path, SITE, KEY):
        pass
    declared = [
        (g.from_seq, g.to_seq, g.lost) for g in committed_gap_records(path) if g.epoch == old_epoch
    ]
    # Before: [(4, 8, 0), (9, None, None)]: 300 readings lost read as none lost.
    assert sorted(declared, key=str) == sorted([(4, 8, None), (9, None, None)], key=str)
