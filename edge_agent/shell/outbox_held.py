"""The readings of an import's batch the outbox holds already, live ones included.

Each seal writes the time span of its block's readings (`blocks.first_t`, `last_t`, indexed;
the empty span, +inf..-inf, for a block without readings): a batch's look-up lists the blocks
whose span overlaps the batch's, from the index alone, and decodes those only, whatever the
outbox holds (weeks of live blocks sealed while the uplink was down). A block sealed before
those columns (NULL in both) gets its span stored by the import's first look-up
(`outbox_spans`); one without a span still (no room to store it) is decoded once per import
and its span remembered (`SpanMemo`) for the batches after.

The listing and the reads of the payloads listed see one state of the file: they share one read
transaction, under this process's lock. Room made by the running agent meanwhile (in another
process: it deletes the oldest blocks and seals what they keep under new seqs) would otherwise
move readings out of listed blocks into blocks never listed, and the import would seal them
again. A read transaction takes no write lock (WAL: the agent keeps sealing), but while it
lasts no checkpoint goes past it, so it is ended after `_SNAPSHOT_SECONDS` (or five times as
long as its listing took, if longer): the next one lists again and reads the blocks not read
yet (a payload never changes under its (epoch, seq)), until one reads every block it lists;
between two, a passive checkpoint copies the WAL into the file, so that the agent's next seal
writes the WAL from its beginning again. A key the outbox remembers from an import
(`backfill_keys`) but whose reading no held block yields (a block changed on disk) is held with
its value unknown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Final

import aiosqlite

from edge_agent.core.held_readings import Instant, Key, held_instant, instant, reading_span
from edge_agent.shell.outbox_reads import PAYLOAD, find_backfill_keys
from edge_agent.shell.outbox_room import RoomMaker
from edge_agent.shell.outbox_spans import (
    BLOCKS_A_READ,
    NOT_STORED,
    SPANS_TABLE,
    Block,
    SpanMemo,
    has_spans_table,
    store_spans,
)
from specs.block import BlockFormatError, decode_block
from specs.records import Reading

__all__ = ["HeldReadings", "SpanMemo", "find_held"]

_SNAPSHOT_SECONDS: Final = 0.25
"""How long one read transaction reads before it is ended (the blocks left: listed again)."""
_READING_PER_LISTING: Final = 5
"""...or this many times as long as its listing took, if longer: a batch overlapping many
blocks (a shuffled file) spends at most a sixth of its time listing them again."""
# From the span index alone: no ORDER BY, which would scan the table (sorted after).
_SPANNED_SQL: Final = "SELECT rowid, epoch, seq FROM blocks WHERE last_t >= ? AND first_t <= ?"
_UNSPANNED_SQL: Final = "SELECT rowid, epoch, seq FROM blocks b WHERE last_t IS NULL"
# The blocks without span columns whose span `block_spans` holds: its rows are few and small
# (no index: it is read whole), each joined to its block by the primary key.
_ASIDE_SQL: Final = (
    f"SELECT b.rowid, b.epoch, b.seq FROM {SPANS_TABLE} s JOIN blocks b"
    " ON b.epoch = s.epoch AND b.seq = s.seq"
    " WHERE s.last_t >= ? AND s.first_t <= ? AND b.last_t IS NULL"
)
_PAYLOAD_SQL: Final = f"SELECT {PAYLOAD} FROM blocks WHERE epoch = ? AND seq = ?"

HeldReadings = dict[Key, Reading | None]
"""The reading the outbox holds for each key it holds (None: its value cannot be read)."""
_Take = Callable[[Block, bytes, bool], None]


def _overlaps(span: tuple[float, float] | None, low: float, high: float) -> bool:
    return span is not None and span[1] >= low and span[0] <= high


async def _rows(
    db: aiosqlite.Connection, sql: str, args: Sequence[float] = ()
) -> list[tuple[int, Block]]:
    async with db.execute(sql, args) as cursor:
        return [(int(r[0]), (str(r[1]), int(r[2]))) for r in await cursor.fetchall()]


async def _listed(
    db: aiosqlite.Connection, low: float, high: float, memo: SpanMemo
) -> list[tuple[Block, bool]]:
    """The blocks that may hold readings from `low` to `high`, oldest first; True: no span."""
    listed = [(rowid, block, False) for rowid, block in await _rows(db, _SPANNED_SQL, (low, high))]
    aside = await has_spans_table(db)
    if aside:
        aside_listed = await _rows(db, _ASIDE_SQL, (low, high))
        listed += [(rowid, block, False) for rowid, block in aside_listed]
    listed += [
        (rowid, block, True)
        for rowid, block in await _rows(db, _UNSPANNED_SQL + (NOT_STORED if aside else ""))
        if block not in memo.spans or _overlaps(memo.spans[block], low, high)
    ]
    listed.sort()  # oldest first: the first reading held of a key is the one kept
    return [(block, unspanned) for _, block, unspanned in listed]


async def _read_snapshot(  # noqa: PLR0917 - one read transaction's part of a look-up
    db: aiosqlite.Connection,
    lock: asyncio.Lock,
    bounds: tuple[float, float],
    memo: SpanMemo,
    done: set[Block],
    take: _Take,
) -> bool:
    """In one read transaction: list, read and `take` the blocks not `done`; True: all."""
    async with lock:
        try:
            # Inside the try: BEGIN runs on aiosqlite's thread even if this task is cancelled
            # while it waits; the rollback, queued behind it, ends what it began.
            await db.execute("BEGIN")  # deferred: a read transaction, no write lock taken
            began = time.monotonic()
            todo = [item for item in await _listed(db, *bounds, memo) if item[0] not in done]
            listing = time.monotonic() - began
            ends = began + max(_SNAPSHOT_SECONDS, _READING_PER_LISTING * listing)
            for start in range(0, len(todo), BLOCKS_A_READ):
                if start and time.monotonic() > ends:
                    return False
                for block, unspanned in todo[start : start + BLOCKS_A_READ]:
                    async with db.execute(_PAYLOAD_SQL, block) as cursor:
                        row = await cursor.fetchone()
                    if row is not None:  # gone in this state too: never to be found
                        take(block, bytes(row[0]), unspanned)
                    done.add(block)
            return True
        finally:
            await db.rollback()  # ends the read transaction


async def find_held(
    db: aiosqlite.Connection,
    lock: asyncio.Lock,
    room: RoomMaker,
    keys: Sequence[Key],
    memo: SpanMemo,
) -> HeldReadings:
    """The reading the outbox holds for each of `keys` it holds (None: its value unknown)."""
    if not keys:
        return {}
    wanted: dict[Instant, Key] = {instant(*key): key for key in keys}
    points = {point for point, _ in keys}
    low = min(seconds for _, seconds in wanted)
    high = max(seconds for _, seconds in wanted)
    held: HeldReadings = {}

    def take(block: Block, payload: bytes, unspanned: bool) -> None:
        try:
            records = decode_block(payload).records
        except BlockFormatError:
            return  # changed on disk: its readings cannot be read back
        if unspanned and block not in memo.spans:
            memo.spans[block] = reading_span(records)
        for record in records:
            if isinstance(record, Reading) and record.point in points:
                held_at = held_instant(record.point, record.t)
                key = None if held_at is None else wanted.get(held_at)
                if key is not None and key not in held:
                    held[key] = record

    await store_spans(db, lock, memo, room)
    done: set[Block] = set()
    while not await _read_snapshot(db, lock, (low, high), memo, done, take):
        async with lock:  # no reader now: the WAL may start again from its beginning
            await room.checkpoint()  # (a full disk refuses it: logged, the look-up goes on)
    async with lock:
        known = await find_backfill_keys(db, keys)
    for key in known:
        held.setdefault(key, None)
    return held
