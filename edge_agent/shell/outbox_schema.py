"""The outbox file's tables, and how a connection to it is set up before the first seal.

SQLite in WAL mode with synchronous=FULL: a block committed here survives a power cut.
A new file starts a new epoch at once, recorded in the epoch journal beside it, so the
collector never confuses its seqs with those of a lost file.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Sequence
from typing import Final, Literal

import aiosqlite
import structlog

from edge_agent.core.chain import ChainState
from edge_agent.shell.outbox_sidecars import EpochJournal
from edge_agent.shell.outbox_space import Reserve, SpaceBudget, is_full
from edge_agent.shell.outbox_transaction import async_write_transaction
from specs.records import GapRecord

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
    backfilled INTEGER,
    first_t REAL,
    last_t REAL,
    PRIMARY KEY (epoch, seq)
);
CREATE INDEX IF NOT EXISTS blocks_undelivered ON blocks (epoch, seq) WHERE delivered_at IS NULL;
-- (point, t) of every backfilled reading sealed here, written by the seal that carries it:
-- re-running an import finds them and imports nothing twice. A key goes with the block that
-- carries its reading (`blocks.backfilled`: how many it carries; NULL: sealed before that
-- column, unknown) when retention deletes it after delivery (`outbox_prune`).
CREATE TABLE IF NOT EXISTS backfill_keys (
    point TEXT NOT NULL,
    t TEXT NOT NULL,
    PRIMARY KEY (point, t)
) WITHOUT ROWID;
-- Where each key announcement (a `key` record) was sealed, when the collector ACKed it, and
-- when that ACK said the collector does not take the key (`refused_at`; NULL: taken, or an
-- ACK without `keys`, as collectors before it send): the agent switches to the announced
-- key only once the collector holds the announcement and takes its key.
CREATE TABLE IF NOT EXISTS key_announcements (
    kid TEXT NOT NULL,
    epoch TEXT NOT NULL,
    seq INTEGER NOT NULL,
    delivered_at REAL,
    refused_at REAL,
    PRIMARY KEY (epoch, seq, kid)
);
-- Per epoch, the highest seq retention (or room-making) deleted after the collector ACKed
-- it (`outbox_prune`): a seq at or below it that a collector's ACK lists missing was
-- delivered and released, then lost by the collector; above it, the outbox lost it
-- (`outbox_missing`). A file before this table has none: its pruned seqs read as lost.
CREATE TABLE IF NOT EXISTS pruned (
    epoch TEXT PRIMARY KEY,
    through INTEGER NOT NULL
);
-- Per epoch, the highest `acked_through` a verified ACK said (`outbox_seal.release`): what a
-- collector stored without a hole below. Only a pruned seq at or below it is `released` when
-- a collector later lists it missing (`outbox_missing`). `issued_at`: the collector's time
-- on the ACK that first said it (NULL: not known), `bound` that time bounded by the agent's
-- clock when synchronized (NULL: a file from before it), so that a restart still tells a
-- stale ACK from a collector gone back (`edge_agent.core.missing_blocks.heard`).
CREATE TABLE IF NOT EXISTS acked (
    epoch TEXT PRIMARY KEY,
    through INTEGER NOT NULL,
    issued_at REAL,
    bound REAL
);
CREATE TABLE IF NOT EXISTS alarm_state (
    name TEXT PRIMARY KEY,
    state BLOB NOT NULL,
    saved_at REAL NOT NULL
);
"""
SeqMark = Literal["pruned", "acked"]
PRUNED: Final[SeqMark] = "pruned"
ACKED: Final[SeqMark] = "acked"
_RAISE_SQL: Final = {
    PRUNED: "INSERT INTO pruned (epoch, through) VALUES (?, ?) ON CONFLICT (epoch)"
    " DO UPDATE SET through = excluded.through WHERE excluded.through > through",
    # The times go with the mark: written when it rises, or once on a file from before them.
    ACKED: "INSERT INTO acked (epoch, through, issued_at, bound) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (epoch) DO UPDATE SET through = excluded.through,"
    " issued_at = excluded.issued_at, bound = excluded.bound"
    " WHERE excluded.through > through"
    " OR (excluded.through = through AND bound IS NULL AND excluded.bound IS NOT NULL)",
}
ACK_MARK_SQL: Final = "SELECT through, issued_at, bound FROM acked WHERE epoch = ?"
# Both marks of an epoch, pruned then acked (NULL: none), in one read.
SEQ_MARKS_SQL: Final = (
    "SELECT (SELECT through FROM pruned WHERE epoch = ?),"
    " (SELECT through FROM acked WHERE epoch = ?)"
)


def raise_seq_mark(
    db: sqlite3.Connection,
    table: SeqMark,
    epoch: str,
    seq: int,
    times: tuple[float, float] | None = None,
) -> None:
    """Raise the epoch's mark in `table` to `seq`; a lower seq leaves it (and writes nothing).

    `times`: for `acked`, the ACK's `issued_at` (the collector's clock) and that time bounded
    by the agent's (`missing_blocks.mark_time`); None: not known.
    """
    at, bound = (None, None) if times is None else times
    db.execute(_RAISE_SQL[table], (epoch, seq) if table == PRUNED else (epoch, seq, at, bound))


# Columns added after the first release, by table; an older file gets them at open.
_ADDED_COLUMNS: Final = (
    ("blocks", "readings", "INTEGER"),
    ("blocks", "thinned", "INTEGER NOT NULL DEFAULT 0"),
    ("key_announcements", "refused_at", "REAL"),
    ("blocks", "backfilled", "INTEGER"),
    ("acked", "issued_at", "REAL"),
    ("acked", "bound", "REAL"),
    ("blocks", "first_t", "REAL"),
    ("blocks", "last_t", "REAL"),
)
# On columns added above, so made once they are there: the blocks that carry (or may carry,
# NULL) imported readings, which retention decodes to find their keys; and the time span of
# each block's readings (`first_t`..`last_t`, Unix seconds; +inf..-inf: no readings; NULL:
# sealed before the columns), where an import looks for the (point, t) it brings (`outbox_held`).
# Each is optional: a file with no room for it (at its budget, or a full disk: a site offline
# for weeks) opens without it, the queries read the table instead (slower), and it is tried
# again at each opening. Building one takes pages, and an opening makes no room.
_ADDED_INDEXES: Final = (
    (
        "blocks_backfilled",
        "ON blocks (epoch, seq) WHERE backfilled IS NULL OR backfilled > 0",
    ),
    ("blocks_span", "ON blocks (last_t, first_t)"),
)
# SQLite page cache of the outbox connection, KiB (SQLite's default is 2,000).
PAGE_CACHE_KIB: Final = 256
# One row of `alarm_state`: the alarm evaluator's whole state, opaque bytes to the outbox.
ALARM_STATE_ROW: Final = "edge"


async def _add_column(db: aiosqlite.Connection, sql: str, reserve: Reserve | None) -> None:
    """Add a column seals write; on a full disk the reserve is given back for it, once.

    Seals need the column, so unlike an index it cannot wait: the reserve is kept for what a
    full disk must still let through (`outbox_space`); the room maker caps the file as usual.
    """
    try:
        await db.execute(sql)
    except sqlite3.OperationalError as exc:
        if not is_full(exc) or reserve is None or not reserve.release():
            raise
        log.warning("outbox_reserve_released", reason="a column added at opening", error=str(exc))
        await db.execute(sql)


async def prepare_file(
    db: aiosqlite.Connection,
    budget: SpaceBudget | None,
    journal: EpochJournal | None,
    first_block: Sequence[GapRecord] = (),
    reserve: Reserve | None = None,
) -> str:
    """Set the connection up, create (or bring up to date) the tables; return the epoch.

    A file without an epoch gets a new one, and the journal records it with `first_block`,
    the gap records its first block will carry (`EpochJournal.owed`).
    """
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=FULL")
    # SQLite's default page cache (2 MiB) fills once a busy site has written that much and
    # stays resident (G7: 60 MB); the pages read back are the blocks just sealed (the
    # publisher sends them at once), a few at a time, and the OS caches the file anyway.
    await db.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
    # The tables and the columns seals write before the page cap: on a file at its budget they
    # take a page of the schema at most (an added column changes no row), where the cap would
    # refuse the opening (SQLITE_FULL) and no room is made before the first seal.
    await db.executescript(_SCHEMA)
    for table, column, kind in _ADDED_COLUMNS:
        async with db.execute(f"PRAGMA table_info({table})") as cursor:
            columns = {str(row[1]) for row in await cursor.fetchall()}
        if column not in columns:
            await _add_column(db, f"ALTER TABLE {table} ADD COLUMN {column} {kind}", reserve)
    if budget is not None:
        await db.execute(f"PRAGMA max_page_count={budget.max_pages}")
        await db.execute(f"PRAGMA wal_autocheckpoint={budget.wal_pages}")
        await db.execute(f"PRAGMA journal_size_limit={budget.wal_bytes}")
    for name, definition in _ADDED_INDEXES:
        try:
            await db.execute(f"CREATE INDEX IF NOT EXISTS {name} {definition}")
        except sqlite3.OperationalError as exc:
            if not is_full(exc):
                raise
            log.warning("outbox_index_not_built", index=name, reason=str(exc))
    async with async_write_transaction(db):
        async with db.execute("SELECT value FROM meta WHERE key = 'epoch'") as cursor:
            row = await cursor.fetchone()
        if row is None:
            # A new file means any earlier sequence state is gone: start a new epoch so the
            # collector never confuses these seqs with those of a lost file.
            epoch = secrets.token_hex(8)
            if journal is not None:
                # Before the epoch commits, that block later: a start cut short in between
                # leaves them to the next one, which finds nothing of them in the file.
                journal.record(epoch, first_block)
            state = ChainState.genesis(epoch)
            await db.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("epoch", state.epoch),
                    ("last_seq", str(state.last_seq)),
                    ("last_hash", state.last_hash),
                ],
            )
        else:
            epoch = str(row[0])
    return epoch
