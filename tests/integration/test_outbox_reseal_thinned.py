"""Readings thinned to make room stay thinned when their blocks are sealed again.

Room is made by thinning the oldest undelivered blocks once, then dropping blocks already
thinned (`core.thinning.give_way`, told by the `thinned` column). A new epoch seals every
undelivered block of the older one again (`outbox_rewrite.reseal_chunk`): it sealed them all
with `thinned` false, so the next room made thinned those readings a second time (another
`thinned` gap record declaring readings already declared, and fewer kept than one thinning
keeps) before it dropped anything. Real outbox files at a 1 MiB budget (`full_outbox`).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_recovery import declared_gap
from edge_agent.shell.outbox_room import giving_way
from specs.block import decode_block
from specs.records import GapReason, Reading
from tests.support.outbox_budget import MIB, full_outbox, room_made
from tests.support.outbox_site import KEY, SITE, T0

pytestmark = pytest.mark.timeout(120)


def _readings(path: Path, *, thinned: bool) -> set[tuple[str, str]]:
    """(point, t) of the readings held in blocks whose `thinned` column is `thinned`."""
    with closing(sqlite3.connect(path)) as db:
        payloads = [
            bytes(row[0])
            for row in db.execute("SELECT payload FROM blocks WHERE thinned = ?", (int(thinned),))
        ]
    return {
        (record.point, record.t)
        for payload in payloads
        for record in decode_block(payload).records
        if isinstance(record, Reading)
    }


async def test_readings_thinned_stay_thinned_when_a_new_epoch_seals_them_again(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    await full_outbox(path)  # thinned and dropped, nothing delivered
    thinned, full = _readings(path, thinned=True), _readings(path, thinned=False)
    assert thinned
    assert full
    made = room_made(path)

    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        old_epoch = outbox.epoch
        gap = declared_gap(GapReason.OUTBOX_RESTORED, old_epoch, 1, T0 + 300)
        new_epoch = await outbox.start_new_epoch((gap,), now=T0 + 300, clock_synced=True)
    assert new_epoch != old_epoch
    assert room_made(path) == made  # no room made: the readings are the same
    with closing(sqlite3.connect(path)) as db:
        epochs = {str(row[0]) for row in db.execute("SELECT DISTINCT epoch FROM blocks")}
    assert epochs == {new_epoch}
    # Before: 0 of the 625 thinned readings sealed again as thinned.
    assert _readings(path, thinned=True) == thinned
    assert _readings(path, thinned=False) == full

    # The next room made (as `RoomMaker` makes it, over the whole backlog) thins only
    # readings not thinned yet. Before: all 625 thinned ones among those it thinned again.
    with closing(sqlite3.connect(path)) as db:
        way, damaged = giving_way(db, KEY, MIB, T0 + 400)
    assert damaged is None
    assert way is not None
    assert way.thinned
    with closing(sqlite3.connect(path)) as db:
        names = {f"{epoch}/{seq}" for epoch, seq in way.blocks}
        given = [
            bytes(row[0])
            for row in db.execute("SELECT payload, epoch || '/' || seq FROM blocks")
            if row[1] in names
        ]
    thinned_again = {
        (record.point, record.t)
        for payload in given
        for record in decode_block(payload).records
        if isinstance(record, Reading)
    } & thinned
    assert len(thinned_again) == 0
