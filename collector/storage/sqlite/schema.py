"""The SQLite schema and bringing a file up to date.

The numbered upgrades are in `collector.storage.sqlite.upgrade_steps`; how the file is opened
and transactions run, in `collector.storage.sqlite.connection`.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from typing import Final

import aiosqlite

from collector.storage.base import StorageError
from collector.storage.sqlite.connection import immediate_transaction
from collector.storage.sqlite.rollups import ROLLUP_TABLE
from collector.storage.sqlite.upgrade_steps import UPGRADES

SCHEMA_VERSION: Final = 17

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS gateways (
    gateway       TEXT PRIMARY KEY,
    enterprise    TEXT NOT NULL,
    district      TEXT NOT NULL,
    registered_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS gateway_keys (
    kid        TEXT PRIMARY KEY,
    gateway    TEXT NOT NULL REFERENCES gateways (gateway),
    alg        TEXT NOT NULL,
    public_pem BLOB NOT NULL,
    added_at   REAL NOT NULL,
    revoked_at REAL,
    -- Schema 11, key lifecycle: when a rotation retired the key (its successor's announcement
    -- stored, plus the overlap), and for a key the gateway announced itself, the block that
    -- carried it and the kid that signed it.
    retired_at      REAL,
    announced_by    TEXT,
    announced_epoch TEXT,
    announced_seq   INTEGER
);
CREATE INDEX IF NOT EXISTS gateway_keys_by_gateway ON gateway_keys (gateway);
CREATE TABLE IF NOT EXISTS blocks (
    gateway     TEXT NOT NULL,
    epoch       TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    payload     BLOB NOT NULL,
    alg         TEXT NOT NULL,
    kid         TEXT NOT NULL,
    sig         BLOB NOT NULL,
    hash        TEXT NOT NULL,
    received_at REAL NOT NULL,
    domain      TEXT,            -- from the header, so exports need not parse payloads
    mine_code   TEXT,            -- coal mines (domain MK) only
    prev        TEXT,            -- from the header: the chain is checked as blocks arrive
    -- Schema 12: the later of its arrival and its newest reading's t; retention deletes the
    -- block once that is before the oldest kept month (collector.storage.block_retention).
    newest_t    REAL,
    PRIMARY KEY (gateway, epoch, seq)
);
CREATE INDEX IF NOT EXISTS blocks_by_age ON blocks (gateway, epoch, newest_t);
-- AUTOINCREMENT: an id is never handed out twice, even after retention deleted the rows
-- with the highest ones (stream positions are reading ids).
CREATE TABLE IF NOT EXISTS readings (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    gateway TEXT NOT NULL,
    epoch   TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    idx     INTEGER NOT NULL,
    point   TEXT NOT NULL,
    quota   TEXT NOT NULL,
    t       REAL NOT NULL,
    value   REAL,
    unit    TEXT NOT NULL,
    quality TEXT NOT NULL,
    flags   TEXT NOT NULL
);
-- A block's readings are stored with it, once, so (gateway, epoch, seq, idx) is unique
-- without an index of its own (one b-tree less per reading; schema 9 dropped it).
-- One reading per (gateway, point, t), whatever block or epoch brought it (the first wins;
-- collector.storage.readings.unique_readings audits the others). rowid (= id) is the index's
-- implicit last column, so (gateway, point, t, id) pages need no sort.
CREATE UNIQUE INDEX IF NOT EXISTS readings_by_series ON readings (gateway, point, t);
CREATE TABLE IF NOT EXISTS latest (
    gateway TEXT NOT NULL,
    point   TEXT NOT NULL,
    quota   TEXT NOT NULL,
    t       REAL NOT NULL,
    value   REAL,
    unit    TEXT NOT NULL,
    quality TEXT NOT NULL,
    flags   TEXT NOT NULL,
    PRIMARY KEY (gateway, point)
);
-- kind 'record': a gap record carried in block (epoch, seq, idx); it declares the seqs
-- from_seq..to_seq (to_seq NULL: to the end) of (gateway, declared_epoch) lost, or no seqs
-- when declared_epoch is NULL; t_from/t_to span the lost readings. kind 'sequence': an open
-- hole from_seq..to_seq of (gateway, epoch), rewritten whenever the hole shrinks or closes.
CREATE TABLE IF NOT EXISTS gaps (
    id             INTEGER PRIMARY KEY,
    gateway        TEXT NOT NULL,
    epoch          TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('record', 'sequence')),
    seq            INTEGER,
    idx            INTEGER,
    from_seq       INTEGER,
    to_seq         INTEGER,
    t              REAL,
    reason         TEXT NOT NULL,
    lost           INTEGER,
    point          TEXT,
    detected_at    REAL NOT NULL,
    declared_epoch TEXT,
    t_from         REAL,
    t_to           REAL
);
CREATE INDEX IF NOT EXISTS gaps_by_stream ON gaps (gateway, kind, epoch);
-- gaps_by_hole and gaps_by_record_time: _OPEN_INDEXES.
-- rowid (= id) is the implicit last column: (gateway, id) pages of GET /v1/gaps need no sort.
CREATE INDEX IF NOT EXISTS gaps_by_gateway ON gaps (gateway);
-- One row per (gateway, epoch) stream (collector.storage.base.StreamState). missing and
-- declared are JSON lists of [from, to] (declared: to null = open-ended); conflict is 1 for
-- good once a seq conflict or a chain break was seen in the stream. first_seen and
-- last_seen are 0 while no block of the stream is stored (it is known only from another
-- epoch's gap record). pruned_through (schema 12): the highest seq whose block retention
-- deleted, always below acked_through (0: none).
CREATE TABLE IF NOT EXISTS ingest_state (
    gateway       TEXT NOT NULL,
    epoch         TEXT NOT NULL,
    acked_through INTEGER NOT NULL,
    max_seq       INTEGER NOT NULL,
    missing       TEXT NOT NULL,
    first_seen    REAL NOT NULL,
    last_seen     REAL NOT NULL,
    declared      TEXT NOT NULL DEFAULT '[]',
    conflict      INTEGER NOT NULL DEFAULT 0,
    pruned_through INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (gateway, epoch)
);
CREATE TABLE IF NOT EXISTS gateway_status (
    gateway   TEXT PRIMARY KEY,
    online    INTEGER NOT NULL,
    last_seen REAL NOT NULL
);
-- The audit trail (collector.audit): rejected messages, admin actions, command results.
-- kind 'rejection' rows are aggregated while open: one row per (source, reason, minute) with
-- a count, the first occurrence's topic, detail and payload hash, and the last one's time.
-- A row joins the hash chain (chain_seq, prev, hash) when it is sealed: a rejection once its
-- minute is over, any other kind at once. Open rows have chain_seq NULL.
CREATE TABLE IF NOT EXISTS audit (
    id           INTEGER PRIMARY KEY,
    at           REAL NOT NULL,
    gateway      TEXT,
    topic        TEXT NOT NULL,
    reason       TEXT NOT NULL,
    detail       TEXT NOT NULL,
    payload_hash TEXT NOT NULL,
    kind         TEXT NOT NULL DEFAULT 'rejection'
                 CHECK (kind IN ('rejection', 'admin', 'command')),
    source       TEXT NOT NULL DEFAULT '',
    minute       REAL,
    count        INTEGER NOT NULL DEFAULT 1,
    last_at      REAL,
    chain_seq    INTEGER,
    prev         TEXT,
    hash         TEXT
);
CREATE INDEX IF NOT EXISTS audit_by_gateway ON audit (gateway, id);
CREATE UNIQUE INDEX IF NOT EXISTS audit_by_chain ON audit (chain_seq);
CREATE UNIQUE INDEX IF NOT EXISTS audit_open_buckets ON audit (source, reason, minute)
    WHERE chain_seq IS NULL AND minute IS NOT NULL;
-- One row: the chain's first kept link (base_seq, and the hash base_prev it chains onto,
-- moved by retention) and its newest (head_seq, head_hash), so that a deleted newest row is
-- found as surely as a changed or deleted older one.
CREATE TABLE IF NOT EXISTS audit_chain (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    base_seq  INTEGER NOT NULL,
    base_prev TEXT NOT NULL,
    head_seq  INTEGER NOT NULL,
    head_hash TEXT NOT NULL
);
-- API bearer tokens made by `collector tokens add`: only the SHA-256 of the secret is kept
-- (collector.tokens). districts is a JSON list of codes or ["*"].
CREATE TABLE IF NOT EXISTS api_tokens (
    name       TEXT PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    districts  TEXT NOT NULL,
    created_at REAL NOT NULL,
    revoked_at REAL
);
-- One row per (gateway, alarm_id): the raise and clear events paired, whatever order they came
-- in. raise_* / clear_* name the block records (epoch, seq, idx) that stated each half.
CREATE TABLE IF NOT EXISTS alarms (
    gateway     TEXT NOT NULL,
    alarm_id    TEXT NOT NULL,
    point       TEXT NOT NULL,
    quota       TEXT NOT NULL,
    level       TEXT NOT NULL,
    raised_at   REAL,
    cleared_at  REAL,
    since       REAL NOT NULL,
    value       REAL,
    threshold   REAL,
    unit        TEXT NOT NULL,
    trigger_t   REAL NOT NULL,
    related     TEXT,
    detail      TEXT,
    raise_epoch TEXT,
    raise_seq   INTEGER,
    raise_idx   INTEGER,
    clear_epoch TEXT,
    clear_seq   INTEGER,
    clear_idx   INTEGER,
    -- Schema 15: the raise or clear was stamped past ingest.ahead_allowance beyond the
    -- collector's clock at its block's arrival (collector.storage.alarms): listed flagged,
    -- and an alarm raised so is not active.
    raise_ahead INTEGER NOT NULL DEFAULT 0,
    clear_ahead INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (gateway, alarm_id)
);
CREATE INDEX IF NOT EXISTS alarms_by_since ON alarms (since, gateway, alarm_id);
-- Every distinct signed meta message (bytes and signature, for auditors) ...
CREATE TABLE IF NOT EXISTS metas (
    gateway     TEXT NOT NULL,
    hash        TEXT NOT NULL,
    payload     BLOB NOT NULL,
    alg         TEXT NOT NULL,
    kid         TEXT NOT NULL,
    sig         BLOB NOT NULL,
    issued_at   REAL NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (gateway, hash)
);
-- ... and the newest description of each point (by issued_at).
CREATE TABLE IF NOT EXISTS point_meta (
    gateway    TEXT NOT NULL,
    point      TEXT NOT NULL,
    quota      TEXT NOT NULL,
    unit       TEXT NOT NULL,
    name       TEXT NOT NULL,
    device     TEXT NOT NULL,
    thresholds TEXT NOT NULL,
    issued_at  REAL NOT NULL,
    meta_hash  TEXT NOT NULL,
    poll       REAL,             -- seconds between readings (meta), for GET /v1/quality
    PRIMARY KEY (gateway, point)
);
-- The journal of GET /v1/stream: alarm, gap and status events, written in the ingest
-- transaction; readings_through is the highest readings.id at that commit, so a stream merges
-- readings and these rows in commit order. payload is the event's JSON (collector.feed.core);
-- an alarm's `active` as its writer judged it is a column of its own (schema 16): collectors
-- before it build the event from every key of the payload.
-- AUTOINCREMENT: an id is never reused, even once old rows are pruned (ids are positions).
CREATE TABLE IF NOT EXISTS feed (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT NOT NULL CHECK (kind IN ('alarm', 'gap', 'status')),
    gateway          TEXT NOT NULL,
    point            TEXT,
    readings_through INTEGER NOT NULL,
    payload          TEXT NOT NULL,
    at               REAL NOT NULL,
    active           INTEGER
);
-- When each gateway was live (GET /v1/quality): [since, until) intervals kept at ingest. A
-- sign of life (block, meta, online status) at t keeps it live until t + offline_after; an
-- offline status ends the interval there.
CREATE TABLE IF NOT EXISTS presence (
    id      INTEGER PRIMARY KEY,
    gateway TEXT NOT NULL,
    since   REAL NOT NULL,
    until   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS presence_by_gateway ON presence (gateway, until);
-- Schema 13: where retention's deletion of raw readings ended, one row once it ran. Ingest
-- leaves out readings before raw_kept_from (collector.storage.block_retention): the first of
-- the oldest month kept; it moves forward only.
CREATE TABLE IF NOT EXISTS retention_state (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    raw_kept_from REAL NOT NULL
);
"""


# Indexes made on opening a file of any schema version, not by a numbered upgrade: they only
# speed a search, so a collector from before them still opens the file. Building one on a large
# file takes seconds (gaps_by_record_time, measured: 2M gap rows 3.2 s, 12M 23 s) and holds the
# write lock meanwhile, so each is built in a transaction of its own once the upgrade has
# committed, and told to the caller: `serve` logs it (index_built), so that a long first start
# says why (docs/operations.md, Upgrading). Not logged here: a CLI command's stdout may be
# its data (an export, --json), and the logs go to stdout.
_OPEN_INDEXES: Final = {
    # An open hole's row, found to delete it when a batch closes or shrinks that hole alone.
    "gaps_by_hole": "ON gaps (gateway, epoch, from_seq) WHERE kind = 'sequence'",
    # A batch's gap records looked up by (gateway, t), to store one sealed again once
    # (collector.storage.gap_records); without it each read every gap record of the gateway.
    "gaps_by_record_time": "ON gaps (gateway, t) WHERE kind = 'record'",
}


@dataclass(frozen=True, slots=True)
class IndexBuilt:
    """An index of _OPEN_INDEXES an open built in a file that lacked it, and how long it took."""

    index: str
    seconds: float


def _statements(script: str) -> list[str]:
    """Split a script into statements (comments may hold semicolons)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    return statements


def _upgrade_steps(version: int) -> range:
    """The upgrades (from version N to N + 1) a file at schema `version` needs."""
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"database schema {version} is newer than this collector's {SCHEMA_VERSION}:"
            " run a collector at least as new as the one that upgraded it"
        )
    if version < 0:  # PRAGMA user_version is any 32-bit number; no collector sets one below 0
        raise StorageError(f"database schema {version} is no collector's: not a collector database")
    return range(version, SCHEMA_VERSION) if version else range(0)


async def migrate(db: aiosqlite.Connection) -> tuple[IndexBuilt, ...]:
    """Bring the file to SCHEMA_VERSION; return the open indexes this call built.

    Upgrade steps first, then any missing tables; once that has committed, the open indexes
    the file lacks, each in a transaction of its own.
    """
    # The version is read inside the write transaction: two collectors opening one old file
    # at once must not both run the upgrade.
    async with immediate_transaction(db):
        rows = await db.execute_fetchall("PRAGMA user_version")
        version = int(next(iter(rows))[0])
        # A fresh file (version 0) gets the whole schema; an older one its upgrades first.
        for step in _upgrade_steps(version):
            await UPGRADES[step](db)
        for statement in _statements(_SCHEMA):
            await db.execute(statement)
        await db.execute(ROLLUP_TABLE)
        if not version:  # its tables are empty: the open indexes cost nothing
            for name, definition in _OPEN_INDEXES.items():
                await db.execute(f"CREATE INDEX {name} {definition}")
        await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    built = [await _build_index(db, name) for name in await _missing_indexes(db)]
    return tuple(index for index in built if index is not None)


async def _missing_indexes(db: aiosqlite.Connection) -> list[str]:
    """The _OPEN_INDEXES the file lacks (a read: outside a transaction it takes no lock)."""
    rows = await db.execute_fetchall("SELECT name FROM sqlite_master WHERE type = 'index'")
    present = {str(row[0]) for row in rows}
    return [name for name in _OPEN_INDEXES if name not in present]


async def _build_index(db: aiosqlite.Connection, name: str) -> IndexBuilt | None:
    """Build the open index `name`, alone in its transaction, unless another open just did."""
    async with immediate_transaction(db):
        # Asked again under the lock: two collectors opening the file at once build it once.
        if name not in await _missing_indexes(db):
            return None
        started = time.monotonic()
        await db.execute(f"CREATE INDEX {name} {_OPEN_INDEXES[name]}")
    return IndexBuilt(name, round(time.monotonic() - started, 3))
