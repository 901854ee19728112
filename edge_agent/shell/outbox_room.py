"""Making room in a full outbox (a full budget or a full disk), inside its open connection.

The decisions about what gives way are the pure core's (`edge_agent.core.thinning`); this
module runs them as transactions on the outbox file, and turns a full disk into a full
budget (see `edge_agent.shell.outbox_space`). The outbox seals through `sealing` from inside
its lock, which makes room when a seal meets SQLITE_FULL, and claims the reserve back
(`reclaim_reserve`) after each seal. A damaged block met on the way gives way as
`outbox_damage` says.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Final, TypeVar

import aiosqlite
import structlog

from edge_agent.core.thinning import EvictedBlock, GivingWay, give_way
from edge_agent.shell.outbox_damage import Append, declare_damaged
from edge_agent.shell.outbox_prune import prune_delivered
from edge_agent.shell.outbox_reads import (
    PAYLOAD,
    WITNESS_COLUMNS,
    as_sealed,
    sealed_count,
    witnesses,
)
from edge_agent.shell.outbox_space import Reserve, SpaceBudget, free_bytes, is_full
from edge_agent.shell.outbox_transaction import async_write_transaction, on_thread
from specs.block import decode_block
from specs.signing import SigningKey

log = structlog.get_logger("edge_agent.outbox")

_Sealed = TypeVar("_Sealed")

# Attempts to make room for one seal before the seal fails (and the sealer holds its readings).
_ROOM_ROUNDS: Final = 64
# Rounds of making room per seal attempt: each halves the blocks evicted at once.
_ROOM_ATTEMPTS: Final = 16
_EVICT_DEFAULT: Final = 1024 * 1024
# Free disk left to the WAL when the file is capped at what a full disk allows.
_WAL_ROOM: Final = 1024 * 1024
# SQLite's own defaults, restored when a file without a budget has room again.
_SQLITE_MAX_PAGES: Final = 4294967294
_SQLITE_WAL_PAGES: Final = 1000


class RoomMaker:
    """Frees space in the outbox file: retention first, then the oldest undelivered blocks."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        append: Append,
        *,
        budget: SpaceBudget | None,
        path: Path,
        reserve: Reserve | None,
        key: Callable[[], SigningKey],
    ) -> None:
        self._db = db
        self._append = append
        self._key = key  # the gateway's current key: a witness of each block's payload
        self._budget = budget
        self._path = path
        self.reserve = reserve
        """The reserve beside the file (None: no budget): an opening on a full disk gives it
        back to bring the file's schema up to date (`outbox_schema.prepare_file`)."""
        self._capped = False
        # A reserve a nearly full disk had no room for at opening: claimed once it has.
        self.reserve_missing = reserve is not None and not reserve.held
        self._evict_limit = budget.evict_bytes if budget is not None else _EVICT_DEFAULT
        # Told, once committed, of each replacement sealed here: the blocks (epoch, seq) that
        # gave way and the seqs sealed in their place (`Delivery.on_replaced`).
        self.replaced: Callable[[Sequence[tuple[str, int]], tuple[int, ...]], None] | None = None
        self.failing_since: float | None = None
        """Since when seals fail for want of room (None: the last one sealed)."""
        self.let_go = 0
        """Readings let go for good (thinned away or dropped) by room made here so far: what
        the `outbox_thinned` and `outbox_readings_dropped` events say, added up."""

    async def sealing(
        self,
        seal: Callable[[], Awaitable[_Sealed]],
        *,
        records: int,
        now: float,
        clock_synced: bool,
        evicting: Callable[[], None],
        keep: Sequence[tuple[str, int]] = (),
    ) -> _Sealed:
        """`seal()`; while it meets a full outbox (or disk), room made and `seal()` again.

        `records`: how many the seal holds (for the log); `evicting` is called before room is
        made (blocks may be thinned or dropped); `keep`: delivered blocks (epoch, seq) room is
        not made of (`make_room`). sqlite3.Error when no room can be made (`failing_since`
        says since when seals fail). Once it sealed, the reserve is claimed back if the disk
        has room again (`reclaim_reserve`).
        """
        with self._seals_failing():
            rounds = 0
            while True:
                try:
                    sealed = await seal()
                except sqlite3.OperationalError as exc:
                    rounds += 1
                    if not is_full(exc) or rounds > _ROOM_ROUNDS:
                        raise
                    if rounds == 1:
                        log.warning("outbox_full", error=str(exc), records=records)
                    evicting()
                    if not await self.make_room(now=now, clock_synced=clock_synced, keep=keep):
                        raise
                else:
                    await self.reclaim_reserve()
                    return sealed

    @contextlib.contextmanager
    def _seals_failing(self) -> Iterator[None]:
        """`failing_since` kept: set by the first seal that fails, cleared by one that seals."""
        try:
            yield
        except sqlite3.Error:
            self.failing_since = self.failing_since or time.time()
            raise
        self.failing_since = None

    async def make_room(
        self, *, now: float, clock_synced: bool, keep: Sequence[tuple[str, int]] = ()
    ) -> bool:
        """Free space: delivered blocks first, then the oldest undelivered (thinned, dropped).

        Not the delivered blocks `keep` (epoch, seq): those a collector has just listed
        missing, to be sent again (`outbox_missing`). Returns whether anything was freed. Each
        step is one transaction; a step that cannot commit (the disk is too full even for it)
        is rolled back, and then the reserve file is given back to the filesystem and the
        steps are tried once more.
        """
        if await self.reclaim_reserve():
            return True
        if not self._capped and await self._disk_is_full():
            await self._cap_at_current_size()
        for _ in range(_ROOM_ATTEMPTS):
            blocked = False
            await self.checkpoint()
            for step in (self._drop_delivered, self._evict_oldest):
                try:
                    if await step(now=now, clock_synced=clock_synced, keep=keep):
                        return True
                except sqlite3.OperationalError as exc:
                    if not is_full(exc):
                        raise
                    blocked = True
                    log.warning("outbox_room_step_failed", step=step.__name__, error=str(exc))
            if not blocked or self._evict_limit <= 1:
                return False
            # Even the step that frees space needs some to commit: fewer blocks at a time.
            self._evict_limit //= 2
        return False

    async def _pragma(self, statement: str) -> int:
        async with self._db.execute(statement) as cursor:
            row = await cursor.fetchone()
        return 0 if row is None else int(row[0])

    async def _disk_is_full(self) -> bool:
        """Whether the last SQLITE_FULL came from the disk rather than the page cap.

        Below the cap is not enough: a block larger than what is left under the cap fails
        with the file still below it. The disk must also lack the room that lifts the cap.
        """
        cap = await self._pragma("PRAGMA max_page_count")
        return await self._pragma("PRAGMA page_count") < cap and not self._disk_has_room()

    def _disk_has_room(self, beyond: int = 0) -> bool:
        """Room for the WAL and the reserve: what lifts a cap a full disk put on the file."""
        wanted = _WAL_ROOM * 2 + (self.reserve.size if self.reserve is not None else 0)
        return free_bytes(self._path.parent) >= wanted + beyond

    async def can_spare(self, size: int) -> bool:
        """Whether `size` bytes may go to what seals can do without (`outbox_spans`).

        Only beyond what they need: the file keeps a room-making's worth of free pages
        under its cap (`evict_bytes`), and the disk the room that lifts a full disk's cap (the
        WAL's twice, the reserve's); never while a full disk caps the file.
        """
        if self._capped or not self._disk_has_room(size):
            return False
        free = await self._pragma("PRAGMA freelist_count") - await self._pragma("PRAGMA page_count")
        free += await self._pragma("PRAGMA max_page_count")
        return free * await self._pragma("PRAGMA page_size") >= size + self._evict_limit

    async def _cap_at_current_size(self) -> None:
        """Meet a full disk like a full budget: see `edge_agent.shell.outbox_space`."""
        released = self.reserve is not None and self.reserve.release()
        # The WAL keeps the disk space it has (never truncated while capped): whatever frees
        # space on a full disk is taken at once by whoever filled it.
        await self._db.execute("PRAGMA journal_size_limit=-1")
        await self.checkpoint()
        # The file keeps the size it has; what the reserve freed beyond the checkpoint stays
        # free for the WAL, so every later transaction can commit and be checkpointed.
        pages = await self._pragma("PRAGMA page_count")
        await self._db.execute(f"PRAGMA max_page_count={pages}")
        await self._db.execute("PRAGMA wal_autocheckpoint=1")
        self._capped = True
        log.warning("outbox_capped_by_full_disk", pages=pages, reserve_released=released)

    async def _lift_cap(self) -> None:
        budget = self._budget
        await self._db.execute(
            f"PRAGMA max_page_count={budget.max_pages if budget else _SQLITE_MAX_PAGES}"
        )
        await self._db.execute(
            f"PRAGMA wal_autocheckpoint={budget.wal_pages if budget else _SQLITE_WAL_PAGES}"
        )
        await self._db.execute(f"PRAGMA journal_size_limit={budget.wal_bytes if budget else -1}")
        self._capped = False
        log.info("outbox_cap_lifted", reason="the disk has room again")

    async def checkpoint(self) -> None:
        """Copy the WAL into the file as far as readers allow, so the WAL can start over.

        The next writer then reuses the WAL file from its start instead of growing it.
        """
        try:
            # Its row read and its cursor closed: a checkpoint statement left open counts as a
            # write in progress, and the next transaction on the thread could not commit.
            await self._pragma("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.OperationalError as exc:
            if not is_full(exc):
                raise
            log.warning("outbox_checkpoint_failed", error=str(exc))

    async def reclaim_reserve(self) -> bool:
        """After a full disk: once there is room, claim the reserve back and lift the cap.

        Checked after every seal and before making room (one statvfs call); returns whether
        the cap was lifted. A reserve not claimed at opening (a nearly full disk) is claimed
        the same way once there is room.
        """
        if not self._capped:
            if self.reserve_missing and self._disk_has_room():
                self.reserve_missing = self.reserve is not None and not self.reserve.claim()
            return False
        if not self._disk_has_room():
            return False
        if self.reserve is not None and not self.reserve.claim():
            return False
        self.reserve_missing = False
        await self._lift_cap()
        return True

    @property
    def disk_full(self) -> bool:
        """Whether the file is capped at what a full disk left it (until there is room)."""
        return self._capped

    @property
    def reserve_held(self) -> bool | None:
        """Whether the disk reserve is in place (None: the outbox has no budget, no reserve)."""
        if self.reserve is None:
            return None
        return not self._capped and not self.reserve_missing

    async def _drop_delivered(
        self,
        *,
        now: float,  # noqa: ARG002 - one signature for every step
        clock_synced: bool,  # noqa: ARG002
        keep: Sequence[tuple[str, int]],
    ) -> bool:
        """Retention gives way first: delivered blocks are at the collector already.

        But for `keep`, which a collector says it is not. With the keys of the readings they
        imported (`outbox_prune`), a chunk a transaction; the caller holds the outbox's lock.
        """
        pruned = await prune_delivered(self._db, math.inf, contextlib.nullcontext(), keep)
        if pruned:
            log.info("delivered_blocks_pruned_for_room", blocks=pruned)
        return pruned > 0

    async def _replace(self, way: GivingWay, *, now: float, clock_synced: bool) -> None:
        """Delete `way.blocks` and seal `way.replacement` at the head, in one transaction.

        Then tells `replaced` (a live block's readings went into the replacement). As
        `replacement.blocks`: MAX_BLOCK_READINGS records a block at most. Imported
        readings let go are forgotten by the import too (`backfill_keys`): the same file
        imported again, once there is room, brings them back.
        """
        async with async_write_transaction(self._db):
            await self._db.executemany("DELETE FROM blocks WHERE epoch = ? AND seq = ?", way.blocks)
            await self._db.executemany(
                "DELETE FROM backfill_keys WHERE point = ? AND t = ?", way.let_go
            )
            sealed = [
                await self._append(records, now=now, clock_synced=clock_synced, thinned=True)
                for records in way.replacement.blocks
            ]
        if self.replaced is not None:
            self.replaced(way.blocks, tuple(block.seq for block in sealed))

    async def _evict_oldest(
        self,
        *,
        now: float,
        clock_synced: bool,
        keep: Sequence[tuple[str, int]],  # noqa: ARG002 - one signature for every step
    ) -> bool:
        """The oldest undelivered blocks give way: thinned first, dropped once thinned.

        A replacement is sealed at the head, so the data it keeps queue up behind everything
        sealed before it: every reading is thinned once, oldest first, before any thinned
        reading is dropped. They are read, decoded and thinned on the connection's thread
        (`giving_way`): up to 8 MiB of them took the event loop, and the pollers on it, for
        about a second (bench/room_making.py).
        """
        way, damaged = await on_thread(self._db, giving_way, self._key(), self._evict_limit, now)
        if damaged is not None:
            async with async_write_transaction(self._db):
                await declare_damaged(
                    self._db, self._append, damaged, now=now, clock_synced=clock_synced
                )
            return True
        if way is None:
            return False
        await self._replace(way, now=now, clock_synced=clock_synced)
        self.let_go += way.replacement.dropped
        if way.thinned:
            log.warning(
                "outbox_thinned",
                **_replaced(way),
                readings_kept=way.replacement.kept_readings,
            )
        else:
            log.error("outbox_readings_dropped", **_replaced(way))
        return True


def giving_way(
    db: sqlite3.Connection, key: SigningKey, limit: int, now: float
) -> tuple[GivingWay | None, tuple[str, int, int | None] | None]:
    """The oldest undelivered blocks, up to `limit` bytes of payload, and how they give way.

    On the connection's thread (`on_thread`). Or the first damaged one met on the way (epoch,
    seq, readings), which gives way first. Oldest by rowid, i.e. by insertion: a wall clock
    stepped back cannot reorder it.
    """
    oldest: list[tuple[EvictedBlock, bool]] = []
    total = 0
    rows = db.execute(
        f"SELECT epoch, seq, {PAYLOAD}, thinned, readings, {WITNESS_COLUMNS} FROM blocks"
        " WHERE delivered_at IS NULL ORDER BY rowid"
    )
    try:
        for row in rows:
            payload = bytes(row[2])
            if not as_sealed(payload, *witnesses(row[5:]), key):
                return None, (str(row[0]), int(row[1]), sealed_count(row[4]))
            records = decode_block(payload).records
            oldest.append((EvictedBlock(str(row[0]), int(row[1]), records), bool(row[3])))
            total += len(payload)
            if total >= limit:
                break
    finally:
        rows.close()
    return give_way(oldest, now=now), None


def _replaced(way: GivingWay) -> dict[str, int]:
    """What the log says of a replacement: the blocks it took the place of, readings lost."""
    return {
        "blocks": len(way.blocks),
        "from_seq": way.blocks[0][1],
        "to_seq": way.blocks[-1][1],
        "readings_dropped": way.replacement.dropped,
    }
