"""The readings of an import's batch the outbox holds already, live ones included.

Each seal writes the time span of its block's readings (`blocks.first_t`, `last_t`, indexed):
a batch's look-up lists the blocks whose span overlaps the batch's, from the index alone, and
decodes those only, whatever the outbox holds (weeks of live blocks sealed while the uplink
was down). A block sealed before those columns (or one without readings) has no span: it is
decoded once per import, and its span remembered (`SpanMemo`) for the batches after.

The lock is taken for each statement and for each read of a few payloads, never across the
decoding: the running agent's seals, in another process, never wait for a look-up (WAL), and
this process's own seals only for one short read. A key the outbox remembers from an import
(`backfill_keys`) but whose reading no held block yields (a block changed on disk) is held
with its value unknown.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Final

import aiosqlite

from edge_agent.core.held_readings import Instant, Key, held_instant, instant, reading_span
from edge_agent.shell.outbox_reads import PAYLOAD, find_backfill_keys
from specs.block import BlockFormatError, decode_block
from specs.records import Reading

_BLOCKS_A_READ: Final = 4
"""Payloads read under one taking of the lock: 2.5 MB at most (4,000 readings each)."""
# From the span index alone: no ORDER BY, which would scan the table (sorted after).
_SPANNED_SQL: Final = "SELECT rowid, epoch, seq FROM blocks WHERE last_t >= ? AND first_t <= ?"
_UNSPANNED_SQL: Final = "SELECT rowid, epoch, seq FROM blocks WHERE last_t IS NULL"
_PAYLOAD_SQL: Final = f"SELECT {PAYLOAD} FROM blocks WHERE epoch = ? AND seq = ?"

_Block = tuple[str, int]
SpanMemo = dict[_Block, tuple[float, float] | None]
"""The spans one import found by decoding blocks sealed without one (a block's payload never
changes under its (epoch, seq): room made seals new seqs, a new epoch new rows)."""
HeldReadings = dict[Key, Reading | None]
"""The reading the outbox holds for each key it holds (None: its value cannot be read)."""


def _overlaps(span: tuple[float, float] | None, low: float, high: float) -> bool:
    return span is not None and span[1] >= low and span[0] <= high


async def _rows(
    db: aiosqlite.Connection, lock: asyncio.Lock, sql: str, args: Sequence[float] = ()
) -> list[tuple[int, _Block]]:
    async with lock, db.execute(sql, args) as cursor:
        return [(int(r[0]), (str(r[1]), int(r[2]))) for r in await cursor.fetchall()]


async def _payloads(
    db: aiosqlite.Connection, lock: asyncio.Lock, blocks: Sequence[_Block]
) -> list[tuple[_Block, bytes]]:
    found = []
    async with lock:
        for block in blocks:
            async with db.execute(_PAYLOAD_SQL, block) as cursor:
                row = await cursor.fetchone()
            if row is not None:  # gone since it was listed: room made, retention
                found.append((block, bytes(row[0])))
    return found


async def find_held(
    db: aiosqlite.Connection, lock: asyncio.Lock, keys: Sequence[Key], memo: SpanMemo
) -> HeldReadings:
    """The reading the outbox holds for each of `keys` it holds (None: its value unknown)."""
    if not keys:
        return {}
    wanted: dict[Instant, Key] = {instant(*key): key for key in keys}
    points = {point for point, _ in keys}
    low = min(seconds for _, seconds in wanted)
    high = max(seconds for _, seconds in wanted)
    listed = await _rows(db, lock, _SPANNED_SQL, (low, high))
    unspanned = {block: rowid for rowid, block in await _rows(db, lock, _UNSPANNED_SQL)}
    listed += [
        (rowid, block)
        for block, rowid in unspanned.items()
        if block not in memo or _overlaps(memo[block], low, high)
    ]
    listed.sort()  # oldest first: the first reading held of a key is the one kept
    held: HeldReadings = {}
    order = [block for _, block in listed]
    for start in range(0, len(order), _BLOCKS_A_READ):
        for block, payload in await _payloads(db, lock, order[start : start + _BLOCKS_A_READ]):
            try:
                records = decode_block(payload).records
            except BlockFormatError:
                continue  # changed on disk: its readings cannot be read back
            if block in unspanned and block not in memo:
                memo[block] = reading_span(records)
            for record in records:
                if isinstance(record, Reading) and record.point in points:
                    held_at = held_instant(record.point, record.t)
                    key = None if held_at is None else wanted.get(held_at)
                    if key is not None and key not in held:
                        held[key] = record
    async with lock:
        known = await find_backfill_keys(db, keys)
    for key in known:
        held.setdefault(key, None)
    return held
