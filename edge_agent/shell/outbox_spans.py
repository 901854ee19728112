"""The spans of blocks sealed before `blocks.first_t`/`last_t`: computed once, and stored.

A file from before those columns (6658714) gets them at opening, NULL in every old block. An
import's first look-up (`outbox_held`) decodes each such block once, a few at a time in rowid
order (never all of them in memory: the decoded block is dropped once its span is known), and
writes the spans back in short write transactions of `_STORED_A_WRITE` blocks, so that no
later import decodes them again (`outbox_spans_stored`: how many were decoded and stored).
A block without readings, or one whose payload cannot be decoded, gets the empty span
(`first_t` +inf, `last_t` -inf), which overlaps no batch.

The write-back is only an aid: under the page cap or on a full disk (SQLITE_FULL) it stops,
and the spans not stored are kept in the import's `SpanMemo` instead, as before; no room is
made for it. Blocks sealed since the columns carry their span; one sealed meanwhile without a
reading is decoded by the look-up once per import and remembered in the memo.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import Sequence
from typing import Final

import aiosqlite
import structlog

from edge_agent.core.held_readings import reading_span
from edge_agent.shell.outbox_reads import PAYLOAD
from edge_agent.shell.outbox_space import is_full
from edge_agent.shell.outbox_transaction import async_write_transaction
from specs.block import BlockFormatError, decode_block

log = structlog.get_logger("edge_agent.outbox")

Block = tuple[str, int]
Span = tuple[float, float]

EMPTY_SPAN: Final = (math.inf, -math.inf)
"""The span stored for a block without readings: it overlaps none."""
_BLOCKS_A_READ: Final = 4
"""Payloads read under one taking of the lock: 2.5 MB at most (4,000 readings each)."""
_STORED_A_WRITE: Final = 256
"""Spans written back in one write transaction (a few ms of the write lock)."""
_ANY_UNSPANNED_SQL: Final = "SELECT 1 FROM blocks WHERE last_t IS NULL LIMIT 1"
# In rowid order from where the last page ended: from the span index when there is one (its
# NULL entries, both columns NULL, are in rowid order), else from the table.
_UNSPANNED_PAGE_SQL: Final = (
    f"SELECT rowid, epoch, seq, {PAYLOAD} FROM blocks WHERE last_t IS NULL AND first_t IS NULL"
    f" AND rowid > ? ORDER BY rowid LIMIT {_BLOCKS_A_READ}"
)
_STORE_SQL: Final = (
    "UPDATE blocks SET first_t = ?, last_t = ? WHERE epoch = ? AND seq = ? AND last_t IS NULL"
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


async def store_spans(db: aiosqlite.Connection, lock: asyncio.Lock, memo: SpanMemo) -> None:
    """Once per import: decode each block without a stored span, and store its span."""
    if memo.stored:
        return
    memo.stored = True
    async with lock, db.execute(_ANY_UNSPANNED_SQL) as cursor:
        if await cursor.fetchone() is None:
            return
    started = time.monotonic()
    after = decoded = stored = 0
    found: list[tuple[float, float, str, int]] = []
    writable = True
    while True:
        async with lock, db.execute(_UNSPANNED_PAGE_SQL, (after,)) as cursor:
            rows = await cursor.fetchall()
        for rowid, epoch, seq, payload in rows:
            after = int(rowid)
            decoded += 1
            span = span_of(bytes(payload))
            if writable:
                found.append((*(span or EMPTY_SPAN), str(epoch), int(seq)))
            else:
                memo.spans[str(epoch), int(seq)] = span
        if found and (not rows or len(found) >= _STORED_A_WRITE):
            writable = await _store(db, lock, found)
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


def _remembered(found: Sequence[tuple[float, float, str, int]]) -> dict[Block, Span | None]:
    return {
        (epoch, seq): None if (low, high) == EMPTY_SPAN else (low, high)
        for low, high, epoch, seq in found
    }


async def _store(
    db: aiosqlite.Connection, lock: asyncio.Lock, found: Sequence[tuple[float, float, str, int]]
) -> bool:
    """Write `found` (first_t, last_t, epoch, seq) back; False: the file has no room."""
    try:
        async with lock, async_write_transaction(db):
            await db.executemany(_STORE_SQL, found)
    except sqlite3.OperationalError as exc:
        if not is_full(exc):
            raise
        return False
    return True
