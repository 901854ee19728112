"""An outbox from before the span columns, full, opens: the span index waits for room.

6658714 added `blocks.first_t`/`last_t` and the index `blocks_span`, made on an older file
when it is opened. Building the index takes pages; on a file at its budget (the normal state
after weeks offline) or on a full disk it met SQLITE_FULL, and the start path makes no room:
`edge-agent run` exited with 'cannot open the outbox: database or disk is full' at every
start, collecting nothing. An optional index never makes an opening fail for room: it is
left (`outbox_index_not_built`) and tried again at each opening; the import's look-up of what
the outbox holds reads the table without it. The columns are added before the page cap is
set (a page of the schema at most). Real 1 MiB outbox files, every free page taken.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_space import SpaceBudget
from edge_agent.shell.outbox_spans import SpanMemo
from specs.block import decode_block
from specs.records import Reading
from tests.support.outbox_budget import (
    MIB,
    as_before_the_span,
    full_outbox,
    minute_block,
    room_made,
    take_free_pages,
)
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.tmpfs import mount_tmpfs, unmount

pytestmark = pytest.mark.timeout(120)


def _indexes(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as db:
        return {str(r[0]) for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}


async def _old_full_outbox(path: Path) -> None:
    """A full outbox from before the span columns: at its budget, no page free."""
    await full_outbox(path)
    as_before_the_span(path)
    assert take_free_pages(path, "old") == (SpaceBudget(MIB).max_pages, 0)


def _a_held_reading(path: Path) -> Reading:
    with closing(sqlite3.connect(path)) as db:
        payload = db.execute("SELECT payload FROM blocks ORDER BY rowid DESC LIMIT 1").fetchone()
    return next(r for r in decode_block(bytes(payload[0])).records if isinstance(r, Reading))


async def test_a_full_outbox_from_before_the_span_index_opens_and_seals(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    await _old_full_outbox(path)
    old = _a_held_reading(path)
    rooms = room_made(path)
    with capture_logs() as logs:
        async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
            sealed = await outbox.seal(minute_block(500), now=T0 + 500, clock_synced=True)
            new = minute_block(500)[0]
            assert isinstance(new, Reading)
            held = await outbox.held_readings([(old.point, old.t), (new.point, new.t)], SpanMemo())
    not_built = [e for e in logs if e["event"] == "outbox_index_not_built"]
    assert [e["index"] for e in not_built] == ["blocks_span"]
    assert "full" in not_built[0]["reason"]
    assert "blocks_span" not in _indexes(path)
    assert sealed.seq > 0
    assert room_made(path) > rooms  # the seal made room
    assert held == {(old.point, old.t): old, (new.point, new.t): new}
    # A later opening with room builds it.
    async with open_outbox(path, SITE, KEY, max_bytes=2 * MIB):
        pass
    assert "blocks_span" in _indexes(path)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, unmounted after the test."""
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "size=8m,mode=0700")
    yield disk
    unmount(disk)


def _fill(disk: Path, leave: int) -> None:
    """Take every byte of `disk` but `leave`."""
    with (disk / "filler").open("wb", buffering=0) as filler:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    filler.write(b"x" * size)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
        os.fsync(filler.fileno())
        filler.truncate(filler.tell() - leave)


async def test_an_outbox_from_before_the_span_opens_on_a_nearly_full_disk(
    small_disk: Path,
) -> None:
    path = small_disk / "outbox.db"
    async with open_outbox(path, SITE, KEY, max_bytes=64 * MIB) as outbox:
        for index in range(120):
            await outbox.seal(minute_block(index), now=T0 + 60 * index, clock_synced=True)
    as_before_the_span(path)
    _fill(small_disk, 32 * 1024)  # less than adding a column to the WAL takes
    async with open_outbox(path, SITE, KEY, max_bytes=64 * MIB) as outbox:
        sealed = await outbox.seal(minute_block(900), now=T0 + 60 * 900, clock_synced=True)
    assert sealed.seq == 121
    with closing(sqlite3.connect(path)) as db:
        columns = [str(r[1]) for r in db.execute("PRAGMA table_info(blocks)")]
    assert columns[-2:] == ["first_t", "last_t"]
