"""The spans of blocks sealed before `blocks.first_t`/`last_t`: computed once, and stored aside.

A file from before those columns (6658714) gets them at opening, NULL in every old block;
every seal since sets them, a block without readings to the empty span (`EMPTY_SPAN`), so
NULL marks a block from before them only (an agent from 6658714 to the empty span's seal wrote
NULL for a readingless block too: its span is stored aside once, as an old block's). An
import's first look-up (`outbox_held`) decodes each such block once, a few at a time in rowid
order (never all of them in memory: the decoded block is dropped once its span is known), and
stores the spans in a table of their own, `block_spans` (epoch, seq, first_t, last_t), so
that no later import decodes them again (`outbox_spans_stored`: how many were decoded and
stored). A block without readings, or one whose payload cannot be decoded, gets the empty
span (`first_t` +inf, `last_t` -inf), which overlaps no batch.

Never in the block's own row: setting its NULL columns changes the row's size, and SQLite
writes the whole row again, payload included (150 MB of WAL for 256 blocks of 4,000
readings, the write lock held for seconds, the running agent's budget and disk taken). A row
of `block_spans` is some 50 bytes: `_STORED_A_WRITE` of them are a few pages of WAL and a
few milliseconds of the write lock.

The store is only an aid. Its table is made by the first store (an opening never waits for
it), and each write is made only while the file and the disk keep what the running agent's
seals need beyond it (`RoomMaker.can_spare`: its reserve is never touched); at the first
that does not, or the first SQLITE_FULL, the store stops, the WAL is checkpointed, and the
spans not stored stay in the import's `SpanMemo` instead. A key (epoch, seq) is never sealed
twice, so a span left behind by a block deleted (retention, room made) matches no other row;
a row whose epoch and seq are given back by `outbox_rewrite` loses its span (`forget_spans`)
to be found again. Once no block lacks its span columns the table is dropped.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from typing import Final

import aiosqlite
import structlog

from edge_agent.core.held_readings import EMPTY_SPAN, reading_span
from edge_agent.shell.outbox_reads import PAYLOAD
from edge_agent.shell.outbox_room import RoomMaker
from edge_agent.shell.outbox_space import is_full
from edge_agent.shell.outbox_transaction import async_write_transaction
from specs.block import BlockFormatError, decode_block

log = structlog.get_logger("edge_agent.outbox")

Block = tuple[str, int]
Span = tuple[float, float]

BLOCKS_A_READ: Final = 4
"""Payloads read under one taking of the lock: 2.5 MB at most (4,000 readings each)."""
_STORED_A_WRITE: Final = 256
"""Spans written in one write transaction: some 13 KB, a few ms of the write lock."""
_SPAN_ROW_BYTES: Final = 64
"""A `block_spans` row's bytes, counted high (a 16-character epoch, a seq, two REALs)."""
SPANS_TABLE: Final = "block_spans"
_CREATE_SQL: Final = (
    f"CREATE TABLE IF NOT EXISTS {SPANS_TABLE} (epoch TEXT NOT NULL, seq INTEGER NOT NULL,"
    " first_t REAL NOT NULL, last_t REAL NOT NULL, PRIMARY KEY (epoch, seq)) WITHOUT ROWID"
)
HAS_SPANS_TABLE_SQL: Final = (
    f"SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '{SPANS_TABLE}'"
)
NOT_STORED: Final = (
    f" AND NOT EXISTS (SELECT 1 FROM {SPANS_TABLE} s WHERE s.epoch = b.epoch AND s.seq = b.seq)"
)
"""The condition of a block of `b` whose span `block_spans` does not hold (with the table)."""
_STORE_SQL: Final = (
    f"INSERT OR IGNORE INTO {SPANS_TABLE} (epoch, seq, first_t, last_t) VALUES (?, ?, ?, ?)"
)


def _page_sql(aside: bool) -> str:
    """The next few blocks without a span (and none stored aside, `aside`), by rowid.

    In rowid order from where the last page ended: from the span index when there is one (its
    NULL entries, both columns NULL, are in rowid order), else from the table.
    """
    return (
        f"SELECT rowid, epoch, seq, {PAYLOAD} FROM blocks b WHERE last_t IS NULL"
        f" AND first_t IS NULL AND rowid > ?{NOT_STORED if aside else ''}"
        f" ORDER BY rowid LIMIT {BLOCKS_A_READ}"
    )


class SpanMemo:
    """What one import learnt of the spans of blocks that have none stored.

    `spans`: those found by decoding and not stored (None: no readings); a block's payload
    never changes under its (epoch, seq): room made seals new seqs, a new epoch new rows.
    """

    def __init__(self) -> None:
        self.spans: dict[Block, Span | None] = {}
        self.stored = False  # the old blocks' spans were stored (or tried) in this import


def span_of(payload: bytes) -> Span | None:
    """The span of a block's readings; None: it has none (or cannot be decoded)."""
    try:
        return reading_span(decode_block(payload).records)
    except BlockFormatError:
        return None  # changed on disk: its readings cannot be read back


async def has_spans_table(db: aiosqlite.Connection) -> bool:
    """Whether the file has a `block_spans` table (made by an import's first store)."""
    async with db.execute(HAS_SPANS_TABLE_SQL) as cursor:
        return await cursor.fetchone() is not None


async def forget_spans(db: aiosqlite.Connection, blocks: Sequence[Block]) -> None:
    """Inside a write transaction: the stored spans of `blocks` go (their rows changed)."""
    if blocks and await has_spans_table(db):
        await db.executemany(f"DELETE FROM {SPANS_TABLE} WHERE epoch = ? AND seq = ?", blocks)


async def store_spans(
    db: aiosqlite.Connection, lock: asyncio.Lock, memo: SpanMemo, room: RoomMaker
) -> None:
    """Once per import: decode each block without a span, and store its span if there is room."""
    if memo.stored:
        return
    memo.stored = True
    async with lock:
        table = await has_spans_table(db)
    if not await _any_unspanned(db, lock, aside=table):
        if table and not await _any_unspanned(db, lock, aside=False):  # the table is needed no more
            await _write(db, lock, room, f"DROP TABLE IF EXISTS {SPANS_TABLE}")
        return
    started = time.monotonic()
    writable = table or await _write(db, lock, room, _CREATE_SQL)
    page_sql = _page_sql(aside=writable)
    after = decoded = stored = 0
    found: list[tuple[str, int, float, float]] = []
    while True:
        async with lock, db.execute(page_sql, (after,)) as cursor:
            rows = await cursor.fetchall()
        for rowid, epoch, seq, payload in rows:
            after = int(rowid)
            decoded += 1
            span = span_of(bytes(payload))
            if writable:
                found.append((str(epoch), int(seq), *(span or EMPTY_SPAN)))
            else:
                memo.spans[str(epoch), int(seq)] = span
        if found and (not rows or len(found) >= _STORED_A_WRITE):
            writable = await _write(db, lock, room, _STORE_SQL, found)
            stored += len(found) if writable else 0
            if not writable:
                memo.spans.update(_remembered(found))
            found = []
        if not rows:
            break
    log.info(
        "outbox_spans_stored",
        decoded=decoded,
        stored=stored,
        seconds=round(time.monotonic() - started, 3),
    )


def _remembered(found: Sequence[tuple[str, int, float, float]]) -> dict[Block, Span | None]:
    return {
        (epoch, seq): None if (low, high) == EMPTY_SPAN else (low, high)
        for epoch, seq, low, high in found
    }


async def _any_unspanned(db: aiosqlite.Connection, lock: asyncio.Lock, *, aside: bool) -> bool:
    """Whether a block lacks its span columns (and, `aside`, a span stored aside)."""
    sql = f"SELECT 1 FROM blocks b WHERE last_t IS NULL{NOT_STORED if aside else ''} LIMIT 1"
    async with lock, db.execute(sql) as cursor:
        return await cursor.fetchone() is not None


async def _write(
    db: aiosqlite.Connection,
    lock: asyncio.Lock,
    room: RoomMaker,
    sql: str,
    rows: Sequence[tuple[str, int, float, float]] = (),
) -> bool:
    """One write transaction of the store; False: no room to spare for it (nothing written).

    Its size is checked first against what the agent's seals need (`RoomMaker.can_spare`);
    a SQLITE_FULL all the same (another process took the room) stops the store, and the WAL is
    checkpointed so that what the rolled-back transaction wrote is reused, not kept.
    """
    async with lock:
        if not await room.can_spare(max(len(rows), 1) * _SPAN_ROW_BYTES):
            return False
        try:
            async with async_write_transaction(db):
                if rows:
                    await db.executemany(sql, rows)
                else:  # the table made or dropped
                    await db.execute(sql)
        except sqlite3.OperationalError as exc:
            if not is_full(exc):
                raise
            await room.checkpoint()
            return False
    return True
