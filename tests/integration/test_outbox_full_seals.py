"""Seals of the send path on a full outbox (at its budget, no page free) make room first.

A block too large for the broker sealed again in smaller ones (`outbox_oversize`) seals at
the head as every seal does, and makes room as every seal does (`RoomMaker.sealing`). Before,
it met SQLITE_FULL: the publisher tried again every `ack_timeout`, and failed again for as
long as the outbox stayed full (a site offline for weeks), so the block was never sent.
Real outbox files of a 1 MiB budget, every free page taken as in `test_outbox_declarations`.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_space import SpaceBudget
from specs.records import GapReason
from tests.integration.test_outbox_declarations import MIB, _block, _fill, _gaps
from tests.support.outbox_site import KEY, SITE, T0

pytestmark = pytest.mark.timeout(120)

ROOM = (GapReason.THINNED, GapReason.OUTBOX_FULL)


async def _full_outbox(path: Path) -> None:
    """An outbox at its 1 MiB budget: thinned and dropped, nothing ACKed, no page free."""
    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        for index in range(120):
            await outbox.seal(_block(index), now=T0 + index, clock_synced=True)


def _room_made(path: Path) -> int:
    return sum(len(_gaps(path, reason)) for reason in ROOM)


async def test_a_block_too_large_is_split_on_a_full_outbox(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    await _full_outbox(path)
    assert _fill(path) == (SpaceBudget(MIB).max_pages, 0)  # at the budget, no page free
    before = _room_made(path)

    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        held = await outbox.delivery.undelivered(after=0, limit=1000)
        picked = held[-1]  # the newest: making room thins the oldest first
        # Before: sqlite3.OperationalError 'database or disk is full', nothing split.
        split = await outbox.delivery.seal_smaller(picked, 30, now=T0, clock_synced=True)
        after = await outbox.delivery.undelivered(after=0, limit=1000)
        await outbox.seal(_block(500), now=T0 + 500, clock_synced=True)  # sealing goes on
    assert split
    assert picked.seq not in {block.seq for block in after}
    assert (picked.seq, picked.seq) in _gaps(path, GapReason.TOO_LARGE)
    assert _room_made(path) > before  # room made as for any seal, each loss declared
    with closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
