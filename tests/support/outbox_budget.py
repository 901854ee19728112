"""Outboxes at a small space budget (1 MiB), for the tests of what a full outbox does.

`minute_block` is a block of sixty readings (five points, one a second), large enough that a
few hundred fill the budget; `full_outbox` seals 120 of them, so thinning and dropping have
run and nothing is ACKed; `take_free_pages` then takes every page left under the budget, so
the next write must make room. Real SQLite files throughout.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_space import SpaceBudget, is_full
from specs.block import decode_block
from specs.records import GapReason, GapRecord, Record
from tests.support.outbox_file import gap_ranges
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.records import reading_at

MIB = 1024 * 1024
POINTS = ("T001-LT-01", "T001-TT-01", "T001-PT-01", "T002-LT-01", "T002-TT-01")
# The gap records of room made for a seal: blocks thinned, and blocks dropped.
ROOM = (GapReason.THINNED, GapReason.OUTBOX_FULL)


def minute_block(index: int) -> tuple[Record, ...]:
    """Block `index`: sixty readings from T0 + 60 * `index`, one a second, of the five POINTS."""
    base = T0 + index * 60
    return tuple(
        reading_at(base + i, float((index + i) % 97), point=POINTS[i % len(POINTS)])
        for i in range(60)
    )


def take_free_pages(path: Path, point: str = "filler") -> tuple[int, int]:
    """Take every free page left under the budget (imported readings' keys); page counts.

    Each fill of one file takes its own `point`: the keys are unique.
    """
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute(f"PRAGMA max_page_count={SpaceBudget(MIB).max_pages}")
        n = 0
        for size in (2000, 500, 100, 20):
            while True:
                try:
                    db.execute(
                        "INSERT INTO backfill_keys VALUES (?, ?)", (point, f"{n:08d}" + "x" * size)
                    )
                except sqlite3.OperationalError as exc:
                    if not is_full(exc):
                        raise
                    break
                n += 1
        # A page a key's insert cannot take alone (its split needs two): a table's root.
        while db.execute("PRAGMA freelist_count").fetchone()[0]:
            try:
                db.execute(f'CREATE TABLE "{point}_{n}" (x)')
            except sqlite3.OperationalError as exc:
                if not is_full(exc):
                    raise
                break
            n += 1
        pages, free = (
            db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count")
        )
    return int(pages), int(free)


async def full_outbox(path: Path, small: range = range(0)) -> list[int]:
    """An outbox at its 1 MiB budget: thinned and dropped, nothing ACKed.

    The blocks `small` of the 120 hold one reading each (no overflow page: a row that frees
    no page when deleted); their seqs are returned.
    """
    seqs = []
    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        for index in range(120):
            records = (reading_at(T0 + index, 1.0),) if index in small else minute_block(index)
            sealed = await outbox.seal(records, now=T0 + index, clock_synced=True)
            seqs += [sealed.seq] if index in small else []
    return seqs


def room_made(path: Path) -> int:
    """How many gap records in the file declare room made (blocks thinned or dropped)."""
    return sum(len(gap_ranges(path, reason)) for reason in ROOM)


async def reopened(path: Path) -> tuple[str, list[GapRecord]]:
    """Open the file as a start does; its epoch then, and the gap records of that epoch.

    With the budget it had: the copy is full, and a new epoch makes room as every seal does
    (`test_outbox_full_epoch`).
    """
    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        epoch = outbox.epoch
    with closing(sqlite3.connect(path)) as db:
        payloads = [
            bytes(row[0])
            for row in db.execute("SELECT payload FROM blocks WHERE epoch = ?", (epoch,))
        ]
    records = [record for payload in payloads for record in decode_block(payload).records]
    return epoch, [record for record in records if isinstance(record, GapRecord)]


def as_before_the_span(path: Path) -> None:
    """The file as the parent of 6658714 made it: no span columns, no span index."""
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("DROP INDEX blocks_span")
        db.execute("ALTER TABLE blocks DROP COLUMN last_t")
        db.execute("ALTER TABLE blocks DROP COLUMN first_t")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
