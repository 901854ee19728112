"""Seals of the send path on a full outbox (at its budget, no page free) make room first.

A block too large for the broker sealed again in smaller ones (`outbox_oversize`) seals at
the head as every seal does, and makes room as every seal does (`RoomMaker.sealing`). Before,
it met SQLITE_FULL: the publisher tried again every `ack_timeout`, and failed again for as
long as the outbox stayed full (a site offline for weeks), so the block was never sent.
So does the `outbox_corrupt` gap record the send path seals for a block changed on disk
(`outbox_damage.ready_to_send`): before, it met SQLITE_FULL, the block was left out and
read again, and its loss declared only once a seal of the sealer had left a page free.
Real outbox files of a 1 MiB budget, every free page taken (`tests/support/outbox_budget.py`).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_space import SpaceBudget
from specs.records import GapReason
from tests.support.damage import zero_inside_payload
from tests.support.outbox_budget import (
    MIB,
    full_outbox,
    minute_block,
    room_made,
    take_free_pages,
)
from tests.support.outbox_file import gap_ranges
from tests.support.outbox_site import KEY, SITE, T0

pytestmark = pytest.mark.timeout(120)


async def test_a_block_too_large_is_split_on_a_full_outbox(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    await full_outbox(path)
    assert take_free_pages(path) == (SpaceBudget(MIB).max_pages, 0)  # at the budget, no page free
    before = room_made(path)

    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        held = await outbox.delivery.undelivered(after=0, limit=1000)
        picked = held[-1]  # the newest: making room thins the oldest first
        # Before: sqlite3.OperationalError 'database or disk is full', nothing split.
        split = await outbox.delivery.seal_smaller(picked, 30, now=T0, clock_synced=True)
        after = await outbox.delivery.undelivered(after=0, limit=1000)
        await outbox.seal(minute_block(500), now=T0 + 500, clock_synced=True)  # sealing goes on
    assert split
    assert picked.seq not in {block.seq for block in after}
    assert (picked.seq, picked.seq) in gap_ranges(path, GapReason.TOO_LARGE)
    assert room_made(path) > before  # room made as for any seal, each loss declared
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_blocks_changed_on_disk_are_declared_by_the_send_path_on_a_full_outbox(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    damaged = await full_outbox(path, small=range(100, 120, 2))
    before = room_made(path)
    for seq in damaged:  # a bad flash sector: they can no longer be decoded
        zero_inside_payload(path, seq)
    assert take_free_pages(path) == (SpaceBudget(MIB).max_pages, 0)  # at the budget, no page free

    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        # Before: the first 4 gap records took the room the deleted rows left in their pages,
        # the other 6 met 'database or disk is full' (outbox_block_damaged_not_mended), their
        # blocks left out and nothing declaring them.
        sent = await outbox.delivery.undelivered(after=0, limit=1000)
        await outbox.seal(minute_block(500), now=T0 + 500, clock_synced=True)  # sealing goes on
    assert not set(damaged) & {block.seq for block in sent}
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT seq FROM blocks WHERE readings = 1 AND thinned = 0").fetchall()
    assert rows == []  # each gave way to its gap record
    declared = gap_ranges(path, GapReason.OUTBOX_CORRUPT)
    assert [seq for seq in damaged if (seq, seq) not in declared] == []
    assert room_made(path) > before  # room made as for any seal, each loss declared
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
