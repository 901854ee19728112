"""The durable outbox: every sealed block lives here until a collector-signed ACK releases it.

SQLite in WAL mode with synchronous=FULL: a block committed here survives a power cut. Each
seal is ONE `BEGIN IMMEDIATE` transaction that reads the chain state, writes the block and
moves the chain forward, so seq is gap-free and assigned in the transaction that stores the
block. Sealed bytes are never rewritten; resends read the same bytes back.

The file also keeps the agent's alarm state (`alarm_state`), written by the same transaction
that seals the block holding the events that changed it: after any crash the stored state
matches the stored blocks, so an alarm is never raised twice nor left without its clear.
"""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from edge_agent.core.chain import ChainState, Identity, SealedBlock, seal
from specs.records import Record
from specs.signing import Signature, SigningKey

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
CREATE TABLE IF NOT EXISTS alarm_state (
    name TEXT PRIMARY KEY,
    state BLOB NOT NULL,
    saved_at REAL NOT NULL
);
"""
# Keys per lookup statement, far below SQLite's host parameter limit.
_KEY_CHUNK = 400
# One row: the alarm evaluator's whole state, opaque bytes to the outbox.
_ALARM_STATE_ROW = "edge"


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


class Outbox:
    """Sealing, reading back and releasing blocks in one SQLite file."""

    def __init__(self, db: aiosqlite.Connection, identity: Identity, key: SigningKey) -> None:
        self._db = db
        self._identity = identity
        self._key = key
        self._epoch = ""
        # One connection serves the sealer, the publisher's reads and the ACK handler:
        # without this lock an ACK's commit would land inside an open seal transaction.
        self._lock = asyncio.Lock()

    @property
    def epoch(self) -> str:
        """The epoch of this outbox file (fixed for the file's life)."""
        return self._epoch

    async def _init(self) -> None:
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=FULL")
        await self._db.executescript(_SCHEMA)
        await self._db.execute("BEGIN IMMEDIATE")
        async with self._db.execute("SELECT value FROM meta WHERE key = 'epoch'") as cursor:
            row = await cursor.fetchone()
        if row is None:
            # A new file means any earlier sequence state is gone: start a new epoch so the
            # collector never confuses these seqs with those of a lost file.
            self._epoch = secrets.token_hex(8)
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

    async def _chain_state(self) -> ChainState:
        async with self._db.execute(
            "SELECT key, value FROM meta WHERE key IN ('last_seq', 'last_hash')"
        ) as cursor:
            values = {str(k): str(v) for k, v in await cursor.fetchall()}
        return ChainState(self._epoch, int(values["last_seq"]), values["last_hash"])

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
        """
        async with self._lock:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                state = await self._chain_state()
                block, new_state = seal(
                    state,
                    self._identity,
                    records,
                    now=now,
                    clock_synced=clock_synced,
                    key=self._key,
                )
                await self._db.execute(
                    "INSERT INTO blocks (epoch, seq, payload, digest, alg, kid, sig, records,"
                    " sealed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        block.epoch,
                        block.seq,
                        block.payload,
                        block.digest,
                        block.signature.alg,
                        block.signature.kid,
                        block.signature.sig,
                        block.records,
                        now,
                    ),
                )
                await self._db.executemany(
                    "UPDATE meta SET value = ? WHERE key = ?",
                    [(str(new_state.last_seq), "last_seq"), (new_state.last_hash, "last_hash")],
                )
                if backfill_keys:
                    await self._db.executemany(
                        "INSERT OR IGNORE INTO backfill_keys (point, t) VALUES (?, ?)",
                        backfill_keys,
                    )
                if alarm_state is not None:
                    await self._db.execute(
                        "INSERT INTO alarm_state (name, state, saved_at) VALUES (?, ?, ?)"
                        " ON CONFLICT (name) DO UPDATE"
                        " SET state = excluded.state, saved_at = excluded.saved_at",
                        (_ALARM_STATE_ROW, alarm_state, now),
                    )
                await self._db.commit()
            except BaseException:
                await self._db.rollback()
                raise
            return block

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

    async def undelivered(self, *, after: int, limit: int) -> list[StoredBlock]:
        """Undelivered blocks with seq > `after`, oldest first."""
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

    async def mark_delivered(
        self, *, epoch: str, through: int, also: int | None, now: float
    ) -> int:
        """Release blocks the collector has stored: every seq <= `through`, plus `also`."""
        async with self._lock:
            if epoch != self._epoch:
                return 0
            cursor = await self._db.execute(
                "UPDATE blocks SET delivered_at = ?"
                " WHERE epoch = ? AND delivered_at IS NULL AND (seq <= ? OR seq = ?)",
                (now, epoch, through, -1 if also is None else also),
            )
            await self._db.commit()
            return cursor.rowcount

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


@asynccontextmanager
async def open_outbox(path: Path, identity: Identity, key: SigningKey) -> AsyncIterator[Outbox]:
    """Open (or create) the outbox at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a write never upgrades
    # a read lock (SQLite answers that with SQLITE_BUSY at once, ignoring the busy timeout).
    db = await aiosqlite.connect(path, isolation_level=None, timeout=30.0)
    try:
        outbox = Outbox(db, identity, key)
        await outbox._init()  # noqa: SLF001 - the factory finishes construction
        yield outbox
    finally:
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
