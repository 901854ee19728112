"""The durable outbox: every sealed block lives here until a collector-signed ACK releases it.

SQLite in WAL mode with synchronous=FULL: a block committed here survives a power cut. Each
seal is ONE `BEGIN IMMEDIATE` transaction that reads the chain state, writes the block and
moves the chain forward, so seq is gap-free and assigned in the transaction that stores the
block. Sealed bytes are never rewritten; resends read the same bytes back.

The file also keeps the agent's alarm state (`alarm_state`), written by the same transaction
that seals the block holding the events that changed it: after any crash the stored state
matches the stored blocks, so an alarm is never raised twice nor left without its clear.

Other processes (`edge-agent backfill`, `edge-agent outbox resend`) write the same file; the
chain state, epoch included, is read inside every seal transaction, never cached.

When the budget (`outbox.max_bytes`, or the disk) is reached, the oldest blocks give way
(delivered ones first, then undelivered ones thinned, then dropped but for their alarm events),
and every loss is named by a gap record sealed in the block that replaces them
(`edge_agent.core.thinning`). When the agent's sequence state proves to be rolled back, or
the file was lost, a new epoch starts and every undelivered block of an older epoch is sealed
again under it.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import aiosqlite
import structlog

from edge_agent.core.chain import ChainState, Identity, SealedBlock
from edge_agent.core.losses import LostReadings
from edge_agent.shell.outbox_recovery import (
    Absent,
    Corrupt,
    EpochJournal,
    SeqMark,
    inspect_outbox,
    quarantine,
)
from edge_agent.shell.outbox_room import RoomMaker
from edge_agent.shell.outbox_seal import (
    append_block,
    chain_position,
    read_chain_state,
    release,
    seal_transaction,
)
from edge_agent.shell.outbox_space import Reserve, SpaceBudget, is_full
from specs.block import GENESIS, decode_block
from specs.records import GapReason, GapRecord, Record, iso_time
from specs.signing import Signature, SigningKey

log = structlog.get_logger("edge_agent.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    epoch TEXT NOT NULL,
    seq INTEGER NOT NULL,
    payload BLOB NOT NULL,
    digest TEXT NOT NULL,
    alg TEXT NOT NULL,
    kid TEXT NOT NULL,
    sig BLOB NOT NULL,
    records INTEGER NOT NULL,
    sealed_at REAL NOT NULL,
    delivered_at REAL,
    readings INTEGER,
    thinned INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (epoch, seq)
);
CREATE INDEX IF NOT EXISTS blocks_undelivered ON blocks (epoch, seq) WHERE delivered_at IS NULL;
-- (point, t) of every backfilled reading sealed here, written by the seal that carries it:
-- re-running an import finds them and imports nothing twice.
CREATE TABLE IF NOT EXISTS backfill_keys (
    point TEXT NOT NULL,
    t TEXT NOT NULL,
    PRIMARY KEY (point, t)
) WITHOUT ROWID;
-- Where each key announcement (a `key` record) was sealed, and when the collector ACKed it:
-- the agent switches to the announced key only once the collector holds the announcement.
CREATE TABLE IF NOT EXISTS key_announcements (
    kid TEXT NOT NULL,
    epoch TEXT NOT NULL,
    seq INTEGER NOT NULL,
    delivered_at REAL,
    PRIMARY KEY (epoch, seq, kid)
);
CREATE TABLE IF NOT EXISTS alarm_state (
    name TEXT PRIMARY KEY,
    state BLOB NOT NULL,
    saved_at REAL NOT NULL
);
"""
# Columns added after the first release; an older file gets them at open.
_ADDED_COLUMNS: Final = (
    ("readings", "ALTER TABLE blocks ADD COLUMN readings INTEGER"),
    ("thinned", "ALTER TABLE blocks ADD COLUMN thinned INTEGER NOT NULL DEFAULT 0"),
)
# Keys per lookup statement, far below SQLite's host parameter limit.
_KEY_CHUNK = 400
# One row: the alarm evaluator's whole state, opaque bytes to the outbox.
_ALARM_STATE_ROW = "edge"
# Blocks of an older epoch are sealed again in groups of at most this many records.
_RESEAL_RECORDS: Final = 2000
_RESEAL_BLOCKS: Final = 64
# Undelivered blocks signed again per transaction when the gateway's key changes.
_RESIGN_BLOCKS: Final = 500
# Attempts to make room for one seal before the seal fails (and the sealer holds its readings).
_ROOM_ROUNDS: Final = 64
# SQLite page cache of the outbox connection, KiB (SQLite's default is 2,000).
PAGE_CACHE_KIB: Final = 1024
# Bytes of blocks just sealed kept in memory for the publisher (they pile up only while it
# is behind or offline; then the oldest are read back from the file as before).
HANDED_BYTES: Final = 2 * 1024 * 1024
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class StoredBlock:
    """A block as read back for (re)sending: the exact sealed bytes and signature."""

    epoch: str
    seq: int
    payload: bytes
    signature: Signature


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """How much waits in the outbox."""

    epoch: str
    last_seq: int
    undelivered: int
    undelivered_records: int
    oldest_undelivered_sealed_at: float | None
    delivered: int


def declared_gap(
    reason: GapReason, epoch: str | None, from_seq: int | None, now: float
) -> GapRecord:
    """A gap record for blocks of `epoch` from `from_seq` on that will never come."""
    return GapRecord(
        t=iso_time(now),
        reason=reason,
        lost=None,
        epoch=epoch,
        from_seq=from_seq if epoch is not None else None,
    )


class Outbox:
    """Sealing, reading back and releasing blocks in one SQLite file."""

    def __init__(
        self,
        db: aiosqlite.Connection,
        identity: Identity,
        key: SigningKey,
        *,
        budget: SpaceBudget | None = None,
        path: Path,
        journal: EpochJournal | None = None,
        reserve: Reserve | None = None,
        mark: SeqMark | None = None,
        unsealed: LostReadings | None = None,
    ) -> None:
        self._mark = mark
        self._unsealed = unsealed if unsealed is not None else LostReadings()
        self._noted: tuple[str, int] = ("", 0)
        self._db = db
        self._path = path
        self._room = RoomMaker(db, self._append, budget=budget, path=path, reserve=reserve)
        self._identity = identity
        self._key = key
        self._budget = budget
        self._journal = journal
        self._epoch = ""
        self._data_version = 0
        # One connection serves the sealer, the publisher's reads and the ACK handler:
        # without this lock an ACK's commit would land inside an open seal transaction.
        self._lock = asyncio.Lock()
        # Set when an ACK releases a block that announced a key (edge_agent.shell.rotation).
        self.announcement_delivered = asyncio.Event()
        # seq -> the block as sealed, until the publisher's `get` takes it: a live block is
        # sent from memory instead of being read back from the file it was just written to.
        # Dropped whenever stored blocks may have changed (release, new epoch, new key,
        # room made, another process's commit).
        self._handed: dict[int, StoredBlock] = {}
        self._handed_bytes = 0

    @property
    def epoch(self) -> str:
        """The current epoch (changes only when sequence state was lost)."""
        return self._epoch

    async def _init(self) -> None:
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=FULL")
        # SQLite's default page cache (2 MiB) fills once a busy site has written that much and
        # stays resident (G7: 60 MB); the pages read back are the blocks just sealed (the
        # publisher sends them at once), a few at a time, and the OS caches the file anyway.
        await self._db.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
        if self._budget is not None:
            await self._db.execute(f"PRAGMA max_page_count={self._budget.max_pages}")
            await self._db.execute(f"PRAGMA wal_autocheckpoint={self._budget.wal_pages}")
            await self._db.execute(f"PRAGMA journal_size_limit={self._budget.wal_bytes}")
        await self._db.executescript(_SCHEMA)
        async with self._db.execute("PRAGMA table_info(blocks)") as cursor:
            columns = {str(row[1]) for row in await cursor.fetchall()}
        for column, statement in _ADDED_COLUMNS:
            if column not in columns:
                await self._db.execute(statement)
        await self._db.execute("BEGIN IMMEDIATE")
        async with self._db.execute("SELECT value FROM meta WHERE key = 'epoch'") as cursor:
            row = await cursor.fetchone()
        if row is None:
            # A new file means any earlier sequence state is gone: start a new epoch so the
            # collector never confuses these seqs with those of a lost file.
            self._epoch = secrets.token_hex(8)
            if self._journal is not None:
                self._journal.record(self._epoch)
            state = ChainState.genesis(self._epoch)
            await self._db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("epoch", state.epoch),
                    ("last_seq", str(state.last_seq)),
                    ("last_hash", state.last_hash),
                ],
            )
        else:
            self._epoch = str(row[0])
        await self._db.commit()
        self._data_version = await self._read_data_version()
        state = await self._chain_state()
        self._noted = (state.epoch, state.last_seq)

    async def _on_thread(self, function: Callable[..., _T], *args: object) -> _T:
        """`function(connection, *args)` on the connection's thread: one round trip.

        aiosqlite's own way to run a call on that thread (`_execute`, in every release since
        0.17; pinned below 1.0): `execute` does exactly this with `sqlite3.Connection.execute`.
        """
        db = self._db
        return await db._execute(lambda: function(db._conn, *args))  # type: ignore[no-untyped-call,no-any-return]  # noqa: SLF001

    async def _chain_state(self) -> ChainState:
        state = await self._on_thread(read_chain_state)
        # Another process may have started a new epoch: the file, not memory, is the truth.
        self._epoch = state.epoch
        return state

    async def seal(
        self,
        records: tuple[Record, ...],
        *,
        now: float,
        clock_synced: bool,
        alarm_state: bytes | None = None,
        backfill_keys: Sequence[tuple[str, str]] = (),
    ) -> SealedBlock:
        """Seal `records` into the next block in ONE immediate transaction.

        `alarm_state`, when given, replaces the stored alarm state in that same transaction:
        the block and the state that produced its alarm events commit together or not at all.
        `backfill_keys` ((point, t) of imported readings) are remembered by the same
        transaction, so an import interrupted anywhere never seals a reading twice.
        A full outbox (or disk) makes room and tries again; sqlite3.Error when it cannot.
        """
        (block,) = await self.seal_many(
            (records,),
            now=now,
            clock_synced=clock_synced,
            alarm_state=alarm_state,
            backfill_keys=backfill_keys,
        )
        return block

    async def seal_many(
        self,
        batches: Sequence[tuple[Record, ...]],
        *,
        now: float,
        clock_synced: bool,
        alarm_state: bytes | None = None,
        backfill_keys: Sequence[tuple[str, str]] = (),
    ) -> list[SealedBlock]:
        """Seal each batch as the next block, all in ONE immediate transaction (as `seal`).

        A group commit: one fsync for every block of the group, for a sealer that fell
        behind its readings (each block is as it would be sealed alone).
        """
        async with self._lock:
            rounds = 0
            while True:
                try:
                    blocks, state = await self._on_thread(
                        seal_transaction,
                        self._identity,
                        self._key,
                        batches,
                        now,
                        clock_synced,
                        None if alarm_state is None else (_ALARM_STATE_ROW, alarm_state),
                        backfill_keys,
                    )
                except sqlite3.OperationalError as exc:
                    rounds += 1
                    if not is_full(exc) or rounds > _ROOM_ROUNDS:
                        raise
                    if rounds == 1:
                        records = sum(map(len, batches))
                        log.warning("outbox_full", error=str(exc), records=records)
                    self._clear_handed()  # room is made by thinning and dropping blocks
                    if not await self._room.make_room(now=now, clock_synced=clock_synced):
                        raise
                else:
                    self._epoch = state.epoch
                    self._note_sealed(blocks[-1])
                    for block in blocks:
                        self._hand_off(block)
                    await self._room.reclaim_reserve()
                    return blocks

    async def _append(
        self,
        records: tuple[Record, ...],
        *,
        now: float,
        clock_synced: bool,
        thinned: bool = False,
    ) -> SealedBlock:
        """Seal one block inside the caller's open transaction."""
        block, state = await self._on_thread(
            append_block, self._identity, self._key, records, now, clock_synced, thinned
        )
        self._epoch = state.epoch
        return block

    def _hand_off(self, block: SealedBlock) -> None:
        """Keep a block just sealed for the publisher's `get`, which sends it next."""
        self._handed[block.seq] = StoredBlock(
            block.epoch, block.seq, block.payload, block.signature
        )
        self._handed_bytes += len(block.payload)
        while self._handed_bytes > HANDED_BYTES:
            self._drop_handed(next(iter(self._handed)))  # the oldest

    def _drop_handed(self, seq: int) -> StoredBlock | None:
        block = self._handed.pop(seq, None)
        if block is not None:
            self._handed_bytes -= len(block.payload)
        return block

    def _clear_handed(self) -> None:
        self._handed.clear()
        self._handed_bytes = 0

    # --- epochs ---------------------------------------------------------------------------

    async def start_new_epoch(
        self, gaps: Sequence[GapRecord], *, now: float, clock_synced: bool
    ) -> str:
        """Start a new epoch whose first block carries `gaps`; re-seal older blocks under it.

        Used when sequence state proved lost: every undelivered block of an older epoch is
        sealed again in the new one (the collector drops readings it already holds), so no
        block the collector did not store is ever released.
        """
        async with self._lock:
            self._clear_handed()
            epoch = secrets.token_hex(8)
            if self._journal is not None:
                self._journal.record(epoch)
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                await self._db.executemany(
                    "UPDATE meta SET value = ? WHERE key = ?",
                    [(epoch, "epoch"), ("0", "last_seq"), (GENESIS, "last_hash")],
                )
                first = await self._append(tuple(gaps), now=now, clock_synced=clock_synced)
                await self._db.commit()
            except BaseException:
                await self._db.rollback()
                raise
            self._note_sealed(first)
            log.warning("epoch_started", epoch=epoch, gaps=[g.reason.value for g in gaps])
        await self.reseal_older_epochs(now=now, clock_synced=clock_synced)
        return epoch

    async def reseal_older_epochs(self, *, now: float, clock_synced: bool) -> int:
        """Seal undelivered blocks of older epochs again under the current one; return count.

        Chunked, one transaction per chunk: an interruption leaves the rest for the next call
        (every open calls this), and memory stays bounded whatever the backlog.
        """
        moved = 0
        while True:
            async with self._lock:
                chunk = await self._reseal_chunk(now=now, clock_synced=clock_synced)
            if chunk == 0:
                break
            moved += chunk
        if moved:
            log.warning("older_epoch_blocks_resealed", blocks=moved, epoch=self._epoch)
        return moved

    async def _reseal_chunk(self, *, now: float, clock_synced: bool) -> int:
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            epoch = (await self._chain_state()).epoch
            async with self._db.execute(
                "SELECT epoch, seq, payload FROM blocks WHERE delivered_at IS NULL"
                " AND epoch != ? ORDER BY rowid LIMIT ?",
                (epoch, _RESEAL_BLOCKS),
            ) as cursor:
                rows = list(await cursor.fetchall())
            records: list[Record] = []
            for row in rows:
                records.extend(decode_block(bytes(row[2])).records)
            last: SealedBlock | None = None
            for start in range(0, len(records), _RESEAL_RECORDS):
                last = await self._append(
                    tuple(records[start : start + _RESEAL_RECORDS]),
                    now=now,
                    clock_synced=clock_synced,
                )
            await self._db.executemany(
                "DELETE FROM blocks WHERE epoch = ? AND seq = ?",
                [(str(row[0]), int(row[1])) for row in rows],
            )
            await self._db.commit()
        except BaseException:
            await self._db.rollback()
            raise
        if last is not None:
            self._note_sealed(last)
        return len(rows)

    def _note_sealed(self, block: SealedBlock) -> None:
        """Keep the seq mark beside the file up to date (after the commit, never before)."""
        self._noted = (block.epoch, block.seq)
        if self._mark is not None:
            self._mark.write(block.epoch, block.seq, self._unsealed)

    @property
    def unsealed(self) -> LostReadings:
        """Readings let go unsealed (by a stop on a full disk) and not yet named by a gap."""
        return self._unsealed

    def note_unsealed(self, unsealed: LostReadings) -> None:
        """Remember (beside the file) readings let go unsealed; an empty tally clears it."""
        self._unsealed = unsealed
        if self._mark is not None:
            self._mark.write(*self._noted, unsealed)

    # --- reading back ---------------------------------------------------------------------

    async def alarm_state(self) -> bytes | None:
        """The alarm state stored by the last seal that carried one (None before any)."""
        async with (
            self._lock,
            self._db.execute(
                "SELECT state FROM alarm_state WHERE name = ?", (_ALARM_STATE_ROW,)
            ) as cursor,
        ):
            row = await cursor.fetchone()
        return None if row is None else bytes(row[0])

    async def known_backfill_keys(self, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Those of `keys` ((point, t)) that an earlier import has sealed already."""
        found: set[tuple[str, str]] = set()
        async with self._lock:
            for start in range(0, len(keys), _KEY_CHUNK):
                chunk = keys[start : start + _KEY_CHUNK]
                values = ", ".join("(?, ?)" for _ in chunk)
                async with self._db.execute(
                    f"WITH k (point, t) AS (VALUES {values})"
                    " SELECT k.point, k.t FROM k JOIN backfill_keys b"
                    " ON b.point = k.point AND b.t = k.t",
                    [part for key in chunk for part in key],
                ) as cursor:
                    found.update((str(p), str(t)) for p, t in await cursor.fetchall())
        return found

    async def undelivered(self, *, after: int, limit: int) -> list[StoredBlock]:
        """Undelivered blocks of the current epoch with seq > `after`, oldest first."""
        async with self._lock:
            async with self._db.execute(
                "SELECT seq, payload, alg, kid, sig FROM blocks"
                " WHERE epoch = ? AND delivered_at IS NULL AND seq > ? ORDER BY seq LIMIT ?",
                (self._epoch, after, limit),
            ) as cursor:
                rows = await cursor.fetchall()
            return [
                StoredBlock(self._epoch, int(r[0]), bytes(r[1]), Signature(r[2], r[3], bytes(r[4])))
                for r in rows
            ]

    async def get(self, seq: int) -> StoredBlock | None:
        """The block `seq` of this epoch if it is still undelivered."""
        handed = self._drop_handed(seq)
        if handed is not None and handed.epoch == self._epoch:
            return handed
        async with self._lock:
            async with self._db.execute(
                "SELECT payload, alg, kid, sig FROM blocks"
                " WHERE epoch = ? AND seq = ? AND delivered_at IS NULL",
                (self._epoch, seq),
            ) as cursor:
                row = await cursor.fetchone()
            if row is None:
                return None
            return StoredBlock(
                self._epoch, seq, bytes(row[0]), Signature(row[1], row[2], bytes(row[3]))
            )

    async def chain_position(self, seq: int) -> tuple[int, str | None]:
        """The current epoch's last seq, and the hash of its block `seq` if still held."""
        async with self._lock:
            state, digest = await self._on_thread(chain_position, seq)
            self._epoch = state.epoch
        return state.last_seq, digest

    async def _read_data_version(self) -> int:
        async with self._db.execute("PRAGMA data_version") as cursor:
            row = await cursor.fetchone()
        return 0 if row is None else int(row[0])

    async def changed_elsewhere(self) -> bool:
        """Whether another process committed to the file since the last call.

        (`PRAGMA data_version` moves only on other connections' commits.) The epoch is read
        again, so a new epoch started by another process is seen here too.
        """
        async with self._lock:
            version = await self._read_data_version()
            if version == self._data_version:
                return False
            self._data_version = version
            self._clear_handed()
            await self._chain_state()
            return True

    # --- releasing ------------------------------------------------------------------------

    async def mark_delivered(
        self, *, epoch: str, through: int, also: int | None, now: float
    ) -> int:
        """Release blocks the collector has stored: every seq <= `through`, plus `also`."""
        async with self._lock:
            if epoch != self._epoch:
                return 0
            for seq in [s for s in self._handed if s <= through or s == also]:
                self._drop_handed(seq)
            released, announced = await self._on_thread(release, epoch, through, also, now)
            if announced:
                self.announcement_delivered.set()
            return released

    # --- key rotation ---------------------------------------------------------------------

    async def announcement_stored(self, kid: str) -> bool:
        """Whether the collector has ACKed a block announcing key `kid`."""
        async with (
            self._lock,
            self._db.execute(
                "SELECT 1 FROM key_announcements WHERE kid = ? AND delivered_at IS NOT NULL",
                (kid,),
            ) as cursor,
        ):
            return await cursor.fetchone() is not None

    async def use_key(self, key: SigningKey) -> int:
        """Sign from now on with `key`, and sign every undelivered block again with it.

        The blocks' bytes stay as sealed (the signature is detached): only `alg`, `kid` and
        `sig` change, so a backlog sealed before a rotation is not left to the old key, which
        the collector retires after its overlap window. Returns the blocks signed again.
        """
        self._key = key
        self._clear_handed()  # signed with the old key
        signed = 0
        while True:
            async with self._lock:
                await self._db.execute("BEGIN IMMEDIATE")
                try:
                    async with self._db.execute(
                        "SELECT epoch, seq, payload FROM blocks"
                        " WHERE delivered_at IS NULL AND kid != ? LIMIT ?",
                        (key.kid, _RESIGN_BLOCKS),
                    ) as cursor:
                        rows = list(await cursor.fetchall())
                    updates = []
                    for epoch, seq, payload in rows:
                        signature = key.sign(bytes(payload))
                        updates.append((signature.alg, signature.kid, signature.sig, epoch, seq))
                    await self._db.executemany(
                        "UPDATE blocks SET alg = ?, kid = ?, sig = ? WHERE epoch = ? AND seq = ?",
                        updates,
                    )
                    await self._db.commit()
                except BaseException:
                    await self._db.rollback()
                    raise
            signed += len(rows)
            if len(rows) < _RESIGN_BLOCKS:
                return signed

    async def prune(self, *, delivered_before: float) -> int:
        """Delete delivered blocks released before the given time (retention)."""
        async with self._lock:
            cursor = await self._db.execute(
                "DELETE FROM blocks WHERE delivered_at IS NOT NULL AND delivered_at < ?",
                (delivered_before,),
            )
            await self._db.commit()
            return cursor.rowcount

    async def stats(self) -> OutboxStats:
        """Counts for `edge-agent status` and the heartbeat."""
        async with self._lock:
            async with self._db.execute(_META_SQL) as cursor:
                meta = await cursor.fetchall()
            async with self._db.execute(_UNDELIVERED_SQL) as cursor:
                undelivered = await cursor.fetchone()
            async with self._db.execute(_DELIVERED_SQL) as cursor:
                delivered = await cursor.fetchone()
            return _stats(meta, undelivered, delivered)


_META_SQL = "SELECT key, value FROM meta"
_UNDELIVERED_SQL = (
    "SELECT COUNT(*), COALESCE(SUM(records), 0), MIN(sealed_at) FROM blocks"
    " WHERE delivered_at IS NULL"
)
_DELIVERED_SQL = "SELECT COUNT(*) FROM blocks WHERE delivered_at IS NOT NULL"


def _stats(meta: Iterable[Any], undelivered: Any, delivered: Any) -> OutboxStats:  # noqa: ANN401 - SQLite rows
    values = {str(k): str(v) for k, v in meta}
    return OutboxStats(
        epoch=values["epoch"],
        last_seq=int(values["last_seq"]),
        undelivered=int(undelivered[0]),
        undelivered_records=int(undelivered[1]),
        oldest_undelivered_sealed_at=None if undelivered[2] is None else float(undelivered[2]),
        delivered=int(delivered[0]),
    )


def _recovery_gaps(
    path: Path, journal: EpochJournal, mark: SeqMark, now: float
) -> tuple[list[GapRecord], bool]:
    """Gap records owed for what happened to the file while the agent was away.

    Returns the gaps and whether the file's own epoch must be abandoned too (it is not the
    file last used here). A corrupt file is moved aside first.
    """
    known = journal.latest()
    found = inspect_outbox(path)
    if isinstance(found, Corrupt):
        moved = quarantine(path, now)
        log.error("outbox_corrupt_moved_aside", path=str(path), moved_to=str(moved), why=found.why)
        return [declared_gap(GapReason.OUTBOX_CORRUPT, known, 1, now)], False
    if isinstance(found, Absent):
        if known is None:
            return [], False  # a first start
        log.error("outbox_lost", path=str(path), why=found.why, epoch=known)
        return [declared_gap(GapReason.OUTBOX_RESTORED, known, 1, now)], False
    noted = mark.read()
    if noted is not None and noted.epoch == found.epoch and noted.seq > found.last_seq:
        # Healthy but older: a WAL cut (or a copy put back) lost seals after this one. The
        # epoch's later seqs can no longer be vouched for, sent or not.
        log.error(
            "outbox_rolled_back",
            path=str(path),
            epoch=found.epoch,
            last_seq=found.last_seq,
            sealed_through=noted.seq,
        )
        return [declared_gap(GapReason.OUTBOX_RESTORED, found.epoch, found.last_seq + 1, now)], True
    if known is not None and known != found.epoch:
        # Not the file last used here: an older copy, or another site's. Its seqs and those
        # of the journal's epoch can no longer be vouched for.
        log.error("outbox_replaced", path=str(path), epoch=found.epoch, expected=known)
        return [
            declared_gap(GapReason.OUTBOX_RESTORED, known, 1, now),
            declared_gap(GapReason.OUTBOX_RESTORED, found.epoch, 1, now),
        ], True
    return [], False


@asynccontextmanager
async def open_outbox(
    path: Path,
    identity: Identity,
    key: SigningKey,
    *,
    max_bytes: int | None = None,
    clock_synced: bool = False,
) -> AsyncIterator[Outbox]:
    """Open (or create) the outbox at `path`, after checking what happened to it.

    A corrupt file is moved aside and a lost one is named: either way a gap record is sealed
    into the first block of the file opened. `max_bytes` enforces a space budget.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    journal = EpochJournal.beside(path)
    mark = SeqMark.beside(path)
    now = time.time()
    noted = mark.read()
    gaps, abandon = _recovery_gaps(path, journal, mark, now)
    # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a write never upgrades
    # a read lock (SQLite answers that with SQLITE_BUSY at once, ignoring the busy timeout).
    db = await aiosqlite.connect(path, isolation_level=None, timeout=30.0)
    try:
        budget = None if max_bytes is None else SpaceBudget(max_bytes)
        reserve = None if budget is None else Reserve.beside(path, budget.reserve_bytes)
        if reserve is not None and not reserve.claim():
            log.warning("outbox_reserve_not_claimed", reason="the disk has no room")
        outbox = Outbox(
            db,
            identity,
            key,
            budget=budget,
            path=path,
            journal=journal,
            reserve=reserve,
            mark=mark,
            unsealed=None if noted is None else noted.unsealed,
        )
        await outbox._init()  # noqa: SLF001 - the factory finishes construction
        if abandon:
            await outbox.start_new_epoch(gaps, now=now, clock_synced=clock_synced)
        elif gaps:
            await outbox.seal(tuple(gaps), now=now, clock_synced=clock_synced)
        if journal.latest() != outbox.epoch:
            journal.record(outbox.epoch)
        await outbox.reseal_older_epochs(now=now, clock_synced=clock_synced)
        # Written now, while the disk may have room: later it is only overwritten in place.
        outbox.note_unsealed(outbox.unsealed)
        yield outbox
    finally:
        mark.close()
        await db.close()


def wall_clock() -> float:
    """Wall-clock seconds (for sealed_at and retention, never for scheduling)."""
    return time.time()


def read_outbox_stats(path: Path) -> OutboxStats:
    """Outbox counts read without disturbing a running agent (read-only, WAL readers)."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        return _stats(
            db.execute(_META_SQL).fetchall(),
            db.execute(_UNDELIVERED_SQL).fetchone(),
            db.execute(_DELIVERED_SQL).fetchone(),
        )
