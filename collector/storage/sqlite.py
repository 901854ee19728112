"""SQLite storage: one writer connection for ingest and registry, one reader for the API.

WAL with synchronous=FULL: an ACK promises the block is stored, and WAL+NORMAL may roll back
the latest commits after a power loss. Each batch is one `BEGIN IMMEDIATE` transaction built
from a handful of `executemany` calls, because aiosqlite pays a thread hop per call. Reads go
through their own connection so the API never sees a half-written batch and WAL lets them run
beside the writer.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from itertools import islice
from pathlib import Path
from typing import Final, TypeVar

import aiosqlite

from collector.model import (
    MISSING,
    AlarmAfter,
    AlarmFilter,
    AlarmState,
    AuditEntry,
    BatchResult,
    GapAfter,
    GapRow,
    GapState,
    Gateway,
    GatewayAfter,
    GatewayKey,
    GatewayProfile,
    GatewayView,
    IncomingBlock,
    IncomingMeta,
    IngestBatch,
    KeyGrant,
    Outcome,
    Page,
    PointAfter,
    PointMetaRow,
    PointRow,
    ReadingAfter,
    ReadingFilter,
    ReadingRow,
    Reason,
    Scope,
    SourcedReading,
    StatusUpdate,
    StreamState,
)
from collector.storage.base import RegistryError, StorageError
from collector.storage.core import (
    AlarmKey,
    BlockKey,
    Link,
    ReadingKey,
    ReadingValue,
    alarm_key,
    block_key,
    chain_breaks,
    classify,
    dedupe_audits,
    keys_to_look_up,
    merge_alarms,
    neighbours,
    progress,
    reading_keys,
    stream_changes,
    unique_readings,
)
from specs.block import block_hash

SCHEMA_VERSION: Final = 6
# Keys per lookup statement: far below SQLite's 32766 host parameters.
_CHUNK: Final = 300
# Readings are looked up by the thousand (a batch holds up to batch_max blocks of them).
_READING_CHUNK: Final = 2000

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
    revoked_at REAL
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
    PRIMARY KEY (gateway, epoch, seq)
);
CREATE TABLE IF NOT EXISTS readings (
    id      INTEGER PRIMARY KEY,
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
    flags   TEXT NOT NULL,
    UNIQUE (gateway, epoch, seq, idx)
);
-- One reading per (gateway, point, t), whatever block or epoch brought it (the first wins;
-- collector.storage.core.unique_readings audits the others). rowid (= id) is the index's
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
-- rowid (= id) is the implicit last column: (gateway, id) pages of GET /v1/gaps need no sort.
CREATE INDEX IF NOT EXISTS gaps_by_gateway ON gaps (gateway);
-- One row per (gateway, epoch) stream (collector.storage.base.StreamState). missing and
-- declared are JSON lists of [from, to] (declared: to null = open-ended); conflict is 1 for
-- good once a seq conflict or a chain break was seen in the stream. first_seen and
-- last_seen are 0 while no block of the stream is stored (it is known only from another
-- epoch's gap record).
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
    PRIMARY KEY (gateway, epoch)
);
CREATE TABLE IF NOT EXISTS gateway_status (
    gateway   TEXT PRIMARY KEY,
    online    INTEGER NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    id           INTEGER PRIMARY KEY,
    at           REAL NOT NULL,
    gateway      TEXT,
    topic        TEXT NOT NULL,
    reason       TEXT NOT NULL,
    detail       TEXT NOT NULL,
    payload_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_gateway ON audit (gateway, id);
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
    PRIMARY KEY (gateway, point)
);
"""


async def _upgrade_to_2(db: aiosqlite.Connection) -> None:
    """Blocks learn their domain and mine code (filled from the stored bytes)."""
    if await _add_columns(db, "blocks", ("domain TEXT", "mine_code TEXT")):
        await db.execute(
            "UPDATE blocks SET domain = json_extract(CAST(payload AS TEXT), '$.domain'),"
            " mine_code = json_extract(CAST(payload AS TEXT), '$.mine_code')"
        )


async def _upgrade_to_3(db: aiosqlite.Connection) -> None:
    """Gap records keep the seq range and time span they declare (DESIGN 6)."""
    await _add_columns(db, "gaps", ("declared_epoch TEXT", "t_from REAL", "t_to REAL"))


async def _upgrade_to_4(db: aiosqlite.Connection) -> None:
    """Streams keep the seq ranges gap records declared lost (closed, never asked for)."""
    await _add_columns(db, "ingest_state", ("declared TEXT NOT NULL DEFAULT '[]'",))


async def _upgrade_to_5(db: aiosqlite.Connection) -> None:
    """Readings become unique per (gateway, point, t): earlier files may hold repeats.

    The lowest id (the first stored) of each key stays; the others are deleted, counted in
    one audit row per gateway, and `latest` is re-read from what stays. _SCHEMA then makes
    the series index unique.
    """
    if not await _table_exists(db, "readings"):
        return
    repeat = (
        "EXISTS (SELECT 1 FROM readings o WHERE o.gateway = r.gateway AND o.point = r.point"
        " AND o.t = r.t AND o.id < r.id)"
    )
    counts = await db.execute_fetchall(
        f"SELECT r.gateway, count(*) FROM readings r WHERE {repeat} GROUP BY r.gateway"
    )
    if not counts:
        await db.execute("DROP INDEX IF EXISTS readings_by_series")
        return
    await db.execute(f"DELETE FROM readings AS r WHERE {repeat}")
    await db.execute("DROP INDEX IF EXISTS readings_by_series")
    if await _table_exists(db, "latest"):
        await db.execute(
            "UPDATE latest SET (quota, value, unit, quality, flags) = (SELECT r.quota,"
            " r.value, r.unit, r.quality, r.flags FROM readings r WHERE r.gateway ="
            " latest.gateway AND r.point = latest.point AND r.t = latest.t)"
            " WHERE EXISTS (SELECT 1 FROM readings r WHERE r.gateway = latest.gateway"
            " AND r.point = latest.point AND r.t = latest.t)"
        )
    if await _table_exists(db, "audit"):
        await db.executemany(
            "INSERT INTO audit (at, gateway, topic, reason, detail, payload_hash)"
            " VALUES (?, ?, '', 'duplicate', ?, '')",
            [
                (
                    time.time(),
                    row[0],
                    (
                        f"schema upgrade: {row[1]} reading(s) of gateway {row[0]} repeated the"
                        " (point, t) of an earlier one and were removed; the first stays"
                    ),
                )
                for row in counts
            ],
        )


# From version N to N + 1. Each step adds only what is missing, so a file whose tables the
# step does not find gets them whole from _SCHEMA afterwards.
async def _upgrade_to_6(db: aiosqlite.Connection) -> None:
    """Blocks keep their `prev` (filled from the stored bytes); streams a conflict flag."""
    if await _add_columns(db, "blocks", ("prev TEXT",)):
        await db.execute(
            "UPDATE blocks SET prev = json_extract(CAST(payload AS TEXT), '$.prev')"
            " WHERE prev IS NULL"
        )
    await _add_columns(db, "ingest_state", ("conflict INTEGER NOT NULL DEFAULT 0",))


_UPGRADES: Final = {
    1: _upgrade_to_2,
    2: _upgrade_to_3,
    3: _upgrade_to_4,
    4: _upgrade_to_5,
    5: _upgrade_to_6,
}

_ALARM_COLUMNS: Final = (
    "a.gateway, a.alarm_id, a.point, a.quota, a.level, a.raised_at, a.cleared_at, a.value,"
    " a.threshold, a.unit, a.trigger_t, a.related, a.detail, a.raise_epoch, a.raise_seq,"
    " a.raise_idx, a.clear_epoch, a.clear_seq, a.clear_idx"
)

_GATEWAY_VIEW: Final = """
SELECT g.gateway, g.enterprise, g.district, s.online, s.last_seen,
       (SELECT max(nullif(i.last_seen, 0)) FROM ingest_state i WHERE i.gateway = g.gateway),
       cur.epoch, cur.acked_through,
       (SELECT count(*) FROM gaps p WHERE p.gateway = g.gateway AND p.kind = 'sequence')
FROM gateways g
LEFT JOIN gateway_status s ON s.gateway = g.gateway
LEFT JOIN ingest_state cur ON cur.gateway = g.gateway AND cur.epoch = (
    SELECT i.epoch FROM ingest_state i WHERE i.gateway = g.gateway
    ORDER BY i.first_seen DESC, i.epoch DESC LIMIT 1)
"""

_READING_COLUMNS: Final = "r.gateway, r.point, r.quota, r.t, r.value, r.unit, r.quality, r.flags"

Row = sqlite3.Row
T = TypeVar("T")


def sqlite_path(url: str, base_dir: Path | None = None) -> Path:
    """The database file of a `sqlite:///path` URL; relative paths are under `base_dir`."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise StorageError(f"storage url {url!r} is not sqlite:///path")
    path = Path(url.removeprefix(prefix))
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return path


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterable[Sequence[T]]:
    iterator = iter(items)
    while chunk := tuple(islice(iterator, size)):
        yield chunk


def _values(width: int, rows: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return ", ".join([one] * rows)


def _scope_clause(scope: Scope, column: str) -> tuple[str, list[object]]:
    """`AND column IN (...)` for a district-limited scope (nothing for `*`)."""
    if scope.districts is None:
        return "", []
    districts = sorted(scope.districts)
    if not districts:
        return " AND 0", []
    return f" AND {column} IN ({', '.join('?' * len(districts))})", list(districts)


def _gateway(row: Row) -> Gateway:
    return Gateway(row[0], row[1], row[2], row[3])


def _key(row: Row) -> GatewayKey:
    return GatewayKey(row[0], row[1], row[2], bytes(row[3]), row[4], row[5])


def _reading(row: Row, rowid: int = 0) -> ReadingRow:
    return ReadingRow(
        gateway=row[0],
        point=row[1],
        quota=row[2],
        t=row[3],
        value=row[4],
        unit=row[5],
        quality=row[6],
        flags=tuple(json.loads(row[7])),
        rowid=rowid,
    )


def _thresholds(text: str) -> dict[str, float]:
    return {str(name): float(limit) for name, limit in json.loads(text).items()}


def _reading_clauses(
    where: ReadingFilter, after: ReadingAfter | None
) -> tuple[list[str], list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    for clause, value in (
        ("r.gateway = ?", where.gateway),
        ("r.point = ?", where.point),
        ("r.t >= ?", where.t_from),
        ("r.t < ?", where.t_to),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    if after is not None:
        clauses.append("(r.gateway, r.point, r.t, r.id) > (?, ?, ?, ?)")
        params.extend(after)
    return clauses, params


def _page(items: list[T], limit: int) -> Page[T]:
    return Page(tuple(items[:limit]), more=len(items) > limit)


class SqliteStorage:
    """The Storage protocol on one SQLite file."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        # One transaction at a time on the writer connection; other processes wait on the
        # database lock (busy_timeout) instead.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SqliteStorage:
        """Open (creating if needed) the database at `path` and bring its schema up to date."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            writer = await _connect(path)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open database {path}: {exc}") from exc
        try:
            await _migrate(writer)
            reader = await _connect(path)
        except sqlite3.Error as exc:
            await writer.close()
            raise StorageError(f"cannot open database {path}: {exc}") from exc
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader)

    async def close(self) -> None:
        """Close both connections."""
        await self._reader.close()
        await self._writer.close()

    async def ping(self) -> None:
        """Run a trivial query."""
        await self._reader.execute_fetchall("SELECT 1")

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            db = self._writer
            try:
                await db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StorageError(f"cannot start a transaction: {exc}") from exc
            try:
                yield db
                await db.execute("COMMIT")
            except sqlite3.Error as exc:
                await _rollback(db)
                raise StorageError(f"transaction failed: {exc}") from exc
            except BaseException:
                await _rollback(db)
                raise

    # --- registry ---------------------------------------------------------------------------

    async def register(self, gateway: Gateway, key: GatewayKey) -> None:
        """Register a gateway (or find it registered identically) and add a key to it."""
        if key.gateway != gateway.gateway:
            raise RegistryError(f"key {key.kid} is for {key.gateway}, not {gateway.gateway}")
        async with self._transaction() as db:
            rows = await db.execute_fetchall(
                "SELECT gateway, enterprise, district, registered_at FROM gateways"
                " WHERE gateway = ?",
                (gateway.gateway,),
            )
            if rows:
                held = _gateway(next(iter(rows)))
                if (held.enterprise, held.district) != (gateway.enterprise, gateway.district):
                    raise RegistryError(
                        f"gateway {gateway.gateway} is registered in district {held.district}"
                        f" (enterprise {held.enterprise}), not {gateway.district}"
                    )
            else:
                await db.execute(
                    "INSERT INTO gateways (gateway, enterprise, district, registered_at)"
                    " VALUES (?, ?, ?, ?)",
                    (gateway.gateway, gateway.enterprise, gateway.district, gateway.registered_at),
                )
            keys = await db.execute_fetchall(
                "SELECT kid, gateway, alg, public_pem, added_at, revoked_at FROM gateway_keys"
                " WHERE kid = ?",
                (key.kid,),
            )
            if keys:
                _check_same_key(_key(next(iter(keys))), key)
                return
            await db.execute(
                "INSERT INTO gateway_keys (kid, gateway, alg, public_pem, added_at, revoked_at)"
                " VALUES (?, ?, ?, ?, ?, NULL)",
                (key.kid, key.gateway, key.alg, key.public_pem, key.added_at),
            )

    async def revoke(self, gateway: str, kid: str | None, at: float) -> tuple[str, ...]:
        """Revoke one key (or every active key) of a gateway; return the kids revoked."""
        async with self._transaction() as db:
            query = "SELECT kid FROM gateway_keys WHERE gateway = ? AND revoked_at IS NULL"
            params: tuple[object, ...] = (gateway,)
            if kid is not None:
                query += " AND kid = ?"
                params = (gateway, kid)
            kids = tuple(
                row[0] for row in await db.execute_fetchall(query + " ORDER BY kid", params)
            )
            await db.executemany(
                "UPDATE gateway_keys SET revoked_at = ? WHERE kid = ?", [(at, k) for k in kids]
            )
        return kids

    async def gateways(self) -> tuple[Gateway, ...]:
        """Every registered gateway, ordered by id."""
        rows = await self._reader.execute_fetchall(
            "SELECT gateway, enterprise, district, registered_at FROM gateways ORDER BY gateway"
        )
        return tuple(_gateway(row) for row in rows)

    async def find_gateways(self, ids: Collection[str]) -> Mapping[str, Gateway]:
        """The registered gateways among `ids`."""
        found: dict[str, Gateway] = {}
        for chunk in _chunks(sorted(set(ids))):
            try:
                rows = await self._reader.execute_fetchall(
                    "SELECT gateway, enterprise, district, registered_at FROM gateways"
                    f" WHERE gateway IN ({', '.join('?' * len(chunk))})",
                    chunk,
                )
            except sqlite3.Error as exc:  # ingest retries a StorageError; a raw one would kill it
                raise StorageError(f"cannot read gateways: {exc}") from exc
            found.update((row[0], _gateway(row)) for row in rows)
        return found

    async def keys(self, gateway: str | None = None) -> tuple[GatewayKey, ...]:
        """Registered keys (of one gateway, or all), revoked ones included."""
        query = "SELECT kid, gateway, alg, public_pem, added_at, revoked_at FROM gateway_keys"
        params: tuple[str, ...] = ()
        if gateway is not None:
            query += " WHERE gateway = ?"
            params = (gateway,)
        rows = await self._reader.execute_fetchall(query + " ORDER BY gateway, added_at", params)
        return tuple(_key(row) for row in rows)

    async def grants(self, kids: Collection[str]) -> Mapping[str, KeyGrant]:
        """The registered keys among `kids`, each with its owning gateway."""
        found: dict[str, KeyGrant] = {}
        for chunk in _chunks(sorted(set(kids))):
            try:
                rows = await self._reader.execute_fetchall(
                    "SELECT k.kid, k.gateway, k.alg, k.public_pem, k.added_at, k.revoked_at,"
                    " g.gateway, g.enterprise, g.district, g.registered_at"
                    " FROM gateway_keys k JOIN gateways g ON g.gateway = k.gateway"
                    f" WHERE k.kid IN ({', '.join('?' * len(chunk))})",
                    chunk,
                )
            except sqlite3.Error as exc:
                raise StorageError(f"cannot read keys: {exc}") from exc
            for row in rows:
                found[row[0]] = KeyGrant(_key(row), Gateway(row[6], row[7], row[8], row[9]))
        return found

    # --- ingest -----------------------------------------------------------------------------

    async def ingest(self, batch: IngestBatch) -> BatchResult:
        """Store blocks once, audit rejections, apply statuses: one durable transaction."""
        async with self._transaction() as db:
            # The batch's keys and their neighbours: to classify, and to check the chain.
            links = await _stored_links(db, neighbours(block_key(b) for b in batch.blocks))
            outcomes = classify(batch.blocks, {key: link[0] for key, link in links.items()})
            fresh = [b for b, o in zip(batch.blocks, outcomes, strict=True) if o is Outcome.STORED]
            breaks = chain_breaks(fresh, links)
            keys = reading_keys(fresh)
            newest = await _newest_times(db, {key[:2] for key in keys})
            held = await _stored_readings(db, keys_to_look_up(keys, newest))
            new, repeated = unique_readings(fresh, held)
            await _insert_blocks(db, new)
            await _pair_alarms(db, new)
            audits = [
                *batch.audits,
                *(rejected for b in new for rejected in b.entries.rejected),
                *dedupe_audits(batch.blocks, outcomes),
                *repeated,
                *(found.audit for found in breaks),
            ]
            await db.executemany(
                "INSERT INTO audit (at, gateway, topic, reason, detail, payload_hash)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (a.at, a.gateway, a.topic, a.reason.value, a.detail, a.payload_hash)
                    for a in audits
                ],
            )
            broken = {found.stream for found in breaks}
            streams = await _advance_streams(db, batch.blocks, outcomes, broken)
            await _apply_statuses(db, batch.statuses)
            await _store_metas(db, batch.metas)
        return BatchResult(outcomes, streams)

    async def stream(self, gateway: str, epoch: str) -> StreamState | None:
        """The stored progress of one sequence."""
        states = await _stream_states(self._reader, [(gateway, epoch)])
        return states.get((gateway, epoch))

    async def audit(
        self, *, gateway: str | None = None, reason: Reason | None = None, limit: int = 1000
    ) -> tuple[AuditEntry, ...]:
        """Audit rows, oldest first."""
        clauses: list[str] = []
        params: list[object] = []
        if gateway is not None:
            clauses.append("gateway = ?")
            params.append(gateway)
        if reason is not None:
            clauses.append("reason = ?")
            params.append(reason.value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self._reader.execute_fetchall(
            "SELECT at, gateway, topic, reason, detail, payload_hash FROM audit"
            f"{where} ORDER BY id LIMIT ?",
            (*params, limit),
        )
        return tuple(
            AuditEntry(row[0], row[1], row[2], Reason(row[3]), row[4], row[5]) for row in rows
        )

    # --- API queries ------------------------------------------------------------------------

    async def gateway_views(
        self, scope: Scope, *, after: GatewayAfter | None, limit: int
    ) -> Page[GatewayView]:
        """Gateways with their ingest progress, ordered by id."""
        scope_sql, params = _scope_clause(scope, "g.district")
        rows = await self._reader.execute_fetchall(
            f"{_GATEWAY_VIEW} WHERE g.gateway > ?{scope_sql} ORDER BY g.gateway LIMIT ?",
            (after[0] if after else "", *params, limit + 1),
        )
        views = [
            GatewayView(
                gateway=row[0],
                enterprise=row[1],
                district=row[2],
                status_online=None if row[3] is None else bool(row[3]),
                status_seen=row[4],
                block_seen=row[5],
                epoch=row[6],
                acked_through=row[7],
                gaps=row[8],
            )
            for row in rows
        ]
        return _page(views, limit)

    async def points(
        self,
        scope: Scope,
        *,
        gateway: str | None,
        quota: str | None,
        after: PointAfter | None,
        limit: int,
    ) -> Page[PointRow]:
        """Points gateways have reported or described, ordered by (gateway, point).

        The newest meta description wins for quota, unit, name and thresholds; a point only
        read so far shows its latest reading's quota and unit.
        """
        sql, params = _scope_clause(scope, "g.district")
        for clause, value in (
            ("k.gateway = ?", gateway),
            ("coalesce(m.quota, l.quota) = ?", quota),
        ):
            if value is not None:
                sql += f" AND {clause}"
                params.append(value)
        if after is not None:
            sql += " AND (k.gateway, k.point) > (?, ?)"
            params.extend(after)
        keys = "SELECT gateway, point FROM latest UNION SELECT gateway, point FROM point_meta"
        if gateway is not None:
            # Narrow both sides before the union; the outer filter stays for clarity.
            keys = (
                "SELECT gateway, point FROM latest WHERE gateway = ?"
                " UNION SELECT gateway, point FROM point_meta WHERE gateway = ?"
            )
            params = [gateway, gateway, *params]
        rows = await self._reader.execute_fetchall(
            "SELECT k.gateway, k.point, coalesce(m.quota, l.quota), coalesce(m.unit, l.unit),"
            f" m.name, m.device, m.thresholds FROM ({keys}) k"
            " JOIN gateways g ON g.gateway = k.gateway"
            " LEFT JOIN latest l ON l.gateway = k.gateway AND l.point = k.point"
            " LEFT JOIN point_meta m ON m.gateway = k.gateway AND m.point = k.point"
            f" WHERE 1{sql} ORDER BY k.gateway, k.point LIMIT ?",
            (*params, limit + 1),
        )
        return _page(
            [
                PointRow(
                    gateway=row[0],
                    point=row[1],
                    quota=row[2],
                    unit=row[3],
                    name=row[4],
                    device=row[5],
                    thresholds={} if row[6] is None else _thresholds(row[6]),
                )
                for row in rows
            ],
            limit,
        )

    async def latest(
        self,
        scope: Scope,
        *,
        enterprise: str | None,
        gateway: str | None,
        after: PointAfter | None,
        limit: int,
    ) -> Page[ReadingRow]:
        """The newest reading of each point, ordered by (gateway, point)."""
        sql, params = _latest_where(scope, enterprise, gateway, after)
        rows = await self._reader.execute_fetchall(
            f"SELECT {_READING_COLUMNS.replace('r.', 'l.')} FROM latest l"
            f" JOIN gateways g ON g.gateway = l.gateway WHERE 1{sql}"
            " ORDER BY l.gateway, l.point LIMIT ?",
            (*params, limit + 1),
        )
        return _page([_reading(row) for row in rows], limit)

    async def readings(
        self, scope: Scope, where: ReadingFilter, *, after: ReadingAfter | None, limit: int
    ) -> Page[ReadingRow]:
        """Readings ordered by (gateway, point, t, rowid)."""
        clauses, params = _reading_clauses(where, after)
        scope_sql, scope_params = _scope_clause(scope, "g.district")
        conditions = " AND ".join(clauses) or "1"
        rows = await self._reader.execute_fetchall(
            f"SELECT {_READING_COLUMNS}, r.id FROM readings r"
            f" JOIN gateways g ON g.gateway = r.gateway WHERE {conditions}{scope_sql}"
            " ORDER BY r.gateway, r.point, r.t, r.id LIMIT ?",
            (*params, *scope_params, limit + 1),
        )
        return _page([_reading(row, row[8]) for row in rows], limit)

    async def alarms(
        self, scope: Scope, where: AlarmFilter, *, after: AlarmAfter | None, limit: int
    ) -> Page[AlarmState]:
        """Alarms ordered by (since, gateway, alarm_id)."""
        clauses: list[str] = []
        params: list[object] = []
        if where.gateway is not None:
            clauses.append("a.gateway = ?")
            params.append(where.gateway)
        if where.active is True:
            clauses.append("a.raised_at IS NOT NULL AND a.cleared_at IS NULL")
        elif where.active is False:
            clauses.append("(a.raised_at IS NULL OR a.cleared_at IS NOT NULL)")
        if where.t_from is not None:
            clauses.append("(a.cleared_at IS NULL OR a.cleared_at >= ?)")
            params.append(where.t_from)
        if where.t_to is not None:
            clauses.append("a.since < ?")
            params.append(where.t_to)
        if after is not None:
            clauses.append("(a.since, a.gateway, a.alarm_id) > (?, ?, ?)")
            params.extend(after)
        scope_sql, scope_params = _scope_clause(scope, "g.district")
        conditions = " AND ".join(clauses) or "1"
        rows = await self._reader.execute_fetchall(
            f"SELECT {_ALARM_COLUMNS} FROM alarms a JOIN gateways g ON g.gateway = a.gateway"
            f" WHERE {conditions}{scope_sql} ORDER BY a.since, a.gateway, a.alarm_id LIMIT ?",
            (*params, *scope_params, limit + 1),
        )
        return _page([_alarm_state(row) for row in rows], limit)

    async def gaps(
        self,
        scope: Scope,
        *,
        gateway: str | None,
        state: GapState | None,
        after: GapAfter | None,
        limit: int,
    ) -> Page[GapRow]:
        """Open holes and stored gap records, ordered by (gateway, rowid)."""
        clauses: list[str] = []
        params: list[object] = []
        if gateway is not None:
            clauses.append("p.gateway = ?")
            params.append(gateway)
        if state is not None:
            clauses.append("p.kind = ?")
            params.append("sequence" if state is GapState.OPEN else "record")
        if after is not None:
            clauses.append("(p.gateway, p.id) > (?, ?)")
            params.extend(after)
        scope_sql, scope_params = _scope_clause(scope, "g.district")
        conditions = " AND ".join(clauses) or "1"
        # An open hole's times and lost readings are unknown (schema 3 counted its blocks).
        rows = await self._reader.execute_fetchall(
            "SELECT p.gateway, p.kind, CASE p.kind WHEN 'sequence' THEN p.epoch"
            " ELSE p.declared_epoch END, p.from_seq, p.to_seq, p.t_from, p.t_to,"
            " CASE p.kind WHEN 'record' THEN p.lost END, p.reason, p.id"
            " FROM gaps p JOIN gateways g ON g.gateway = p.gateway"
            f" WHERE {conditions}{scope_sql} ORDER BY p.gateway, p.id LIMIT ?",
            (*params, *scope_params, limit + 1),
        )
        return _page(
            [
                GapRow(
                    gateway=row[0],
                    epoch=row[2],
                    from_seq=row[3],
                    to_seq=row[4],
                    t_from=row[5],
                    t_to=row[6],
                    lost=row[7],
                    reason=MISSING if row[1] == "sequence" else row[8],
                    state=GapState.OPEN if row[1] == "sequence" else GapState.CLOSED,
                    rowid=row[9],
                )
                for row in rows
            ],
            limit,
        )

    # --- exports ----------------------------------------------------------------------------

    async def gateway_profile(self, gateway: str) -> GatewayProfile | None:
        """Domain and mine code from the gateway's newest stored block; None without blocks."""
        # The newest block is the top stored seq of the most recently active sequence (its
        # max_seq may be a declared seq that has no block): key lookups.
        rows = await self._reader.execute_fetchall(
            "SELECT b.domain, b.mine_code FROM ingest_state i JOIN blocks b"
            " ON b.gateway = i.gateway AND b.epoch = i.epoch AND b.seq = (SELECT max(x.seq)"
            " FROM blocks x WHERE x.gateway = i.gateway AND x.epoch = i.epoch)"
            " WHERE i.gateway = ? ORDER BY i.last_seen DESC, i.first_seen DESC LIMIT 1",
            (gateway,),
        )
        for row in rows:
            return GatewayProfile(gateway, row[0], row[1])
        return None

    async def point_metas(self, gateway: str) -> Mapping[str, PointMetaRow]:
        """The newest meta description of each point of a gateway, by point."""
        rows = await self._reader.execute_fetchall(
            "SELECT gateway, point, quota, unit, name, device, thresholds, issued_at"
            " FROM point_meta WHERE gateway = ? ORDER BY point",
            (gateway,),
        )
        return {
            row[1]: PointMetaRow(
                gateway=row[0],
                point=row[1],
                quota=row[2],
                unit=row[3],
                name=row[4],
                device=row[5],
                thresholds=_thresholds(row[6]),
                issued_at=row[7],
            )
            for row in rows
        }

    async def sourced_readings(
        self, where: ReadingFilter, *, after: ReadingAfter | None, limit: int
    ) -> Page[SourcedReading]:
        """Readings with their source block, ordered like `readings`."""
        clauses, params = _reading_clauses(where, after)
        rows = await self._reader.execute_fetchall(
            f"SELECT {_READING_COLUMNS}, r.id, r.epoch, r.seq, r.idx, b.domain, b.mine_code"
            " FROM readings r JOIN blocks b"
            " ON b.gateway = r.gateway AND b.epoch = r.epoch AND b.seq = r.seq"
            f" WHERE {' AND '.join(clauses) or '1'}"
            " ORDER BY r.gateway, r.point, r.t, r.id LIMIT ?",
            (*params, limit + 1),
        )
        return _page(
            [
                SourcedReading(_reading(row, row[8]), row[9], row[10], row[11], row[12], row[13])
                for row in rows
            ],
            limit,
        )


# --- helpers (each runs inside the caller's transaction) -------------------------------------


async def _connect(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await db.execute("PRAGMA busy_timeout = 10000")
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = FULL")
        await db.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        await db.close()
        raise
    return db


async def _rollback(db: aiosqlite.Connection) -> None:
    # Shielded: a cancelled caller must still leave the connection usable. A failed COMMIT
    # may have ended the transaction already, so there may be nothing to roll back.
    if db.in_transaction:
        await asyncio.shield(db.execute("ROLLBACK"))


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
        raise StorageError(f"database schema {version} is newer than this collector's")
    return range(version, SCHEMA_VERSION) if version else range(0)


async def _table_exists(db: aiosqlite.Connection, table: str) -> bool:
    rows = await db.execute_fetchall(f"PRAGMA table_info({table})")
    return bool(list(rows))


async def _add_columns(db: aiosqlite.Connection, table: str, columns: Sequence[str]) -> bool:
    """Add the columns (`name TYPE`) `table` lacks; False when there is no such table."""
    rows = await db.execute_fetchall(f"PRAGMA table_info({table})")
    present = {str(row[1]) for row in rows}
    if not present:
        return False
    for column in columns:
        if column.split()[0] not in present:
            await db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
    return True


async def _migrate(db: aiosqlite.Connection) -> None:
    # The version is read inside the write transaction: two collectors opening one old file
    # at once must not both run the upgrade.
    await db.execute("BEGIN IMMEDIATE")
    try:
        rows = await db.execute_fetchall("PRAGMA user_version")
        # A fresh file (version 0) gets the whole schema; an older one its upgrades first.
        for step in _upgrade_steps(int(next(iter(rows))[0])):
            await _UPGRADES[step](db)
        for statement in _statements(_SCHEMA):
            await db.execute(statement)
        await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        await db.execute("COMMIT")
    except BaseException:
        await _rollback(db)
        raise


def _check_same_key(held: GatewayKey, key: GatewayKey) -> None:
    if held.gateway != key.gateway:
        raise RegistryError(f"key {key.kid} is registered to gateway {held.gateway}")
    if held.revoked_at is not None:
        raise RegistryError(f"key {key.kid} was revoked; a revoked key cannot come back")
    if held.public_pem.strip() != key.public_pem.strip() or held.alg != key.alg:
        raise RegistryError(f"key id {key.kid} is registered with another public key")


async def _stored_links(
    db: aiosqlite.Connection, keys: Collection[BlockKey]
) -> dict[BlockKey, Link]:
    """(hash, prev) of the stored blocks among `keys`."""
    found: dict[BlockKey, Link] = {}
    for chunk in _chunks(sorted(set(keys))):
        rows = await db.execute_fetchall(
            f"WITH k (gateway, epoch, seq) AS (VALUES {_values(3, len(chunk))})"
            " SELECT b.gateway, b.epoch, b.seq, b.hash, b.prev FROM k CROSS JOIN blocks b"
            " ON b.gateway = k.gateway AND b.epoch = k.epoch AND b.seq = k.seq",
            [part for key in chunk for part in key],
        )
        found.update(((row[0], row[1], row[2]), (row[3], row[4])) for row in rows)
    return found


async def _newest_times(
    db: aiosqlite.Connection, series: Collection[tuple[str, str]]
) -> dict[tuple[str, str], float]:
    """The newest stored t of each (gateway, point) that has readings (an index lookup each)."""
    found: dict[tuple[str, str], float] = {}
    for chunk in _chunks(sorted(series)):
        rows = await db.execute_fetchall(
            f"WITH k (gateway, point) AS (VALUES {_values(2, len(chunk))})"
            " SELECT k.gateway, k.point, (SELECT max(r.t) FROM readings r"
            " WHERE r.gateway = k.gateway AND r.point = k.point) FROM k",
            [part for key in chunk for part in key],
        )
        found.update(((row[0], row[1]), row[2]) for row in rows if row[2] is not None)
    return found


async def _stored_readings(
    db: aiosqlite.Connection, keys: Sequence[ReadingKey]
) -> dict[ReadingKey, ReadingValue]:
    found: dict[ReadingKey, ReadingValue] = {}
    for chunk in _chunks(sorted(set(keys)), _READING_CHUNK):
        rows = await db.execute_fetchall(
            f"WITH k (gateway, point, t) AS (VALUES {_values(3, len(chunk))})"
            " SELECT r.gateway, r.point, r.t, r.value, r.unit, r.quality FROM k"
            " CROSS JOIN readings r ON r.gateway = k.gateway AND r.point = k.point AND r.t = k.t",
            [part for key in chunk for part in key],
        )
        found.update(((row[0], row[1], row[2]), (row[3], row[4], row[5])) for row in rows)
    return found


async def _insert_blocks(db: aiosqlite.Connection, blocks: Sequence[IncomingBlock]) -> None:
    block_rows: list[tuple[object, ...]] = []
    reading_rows: list[tuple[object, ...]] = []
    gap_rows: list[tuple[object, ...]] = []
    for incoming in blocks:
        header, sig = incoming.block.header, incoming.signature
        block_rows.append(
            (
                header.gateway,
                header.epoch,
                header.seq,
                incoming.block.payload,
                sig.alg,
                sig.kid,
                sig.sig,
                incoming.block.digest,
                incoming.received_at,
                header.domain,
                header.mine_code,
                header.prev,
            )
        )
        stream = (header.gateway, header.epoch, header.seq)
        reading_rows.extend(
            (
                *stream,
                r.idx,
                r.point,
                r.quota,
                r.t,
                r.value,
                r.unit,
                r.quality,
                json.dumps(list(r.flags)),
            )
            for r in incoming.entries.readings
        )
        gap_rows.extend(
            (
                *stream,
                g.idx,
                g.t,
                g.reason.value,
                g.lost,
                g.point,
                incoming.received_at,
                g.epoch,
                g.from_seq,
                g.to_seq,
                g.t_from,
                g.t_to,
            )
            for g in incoming.entries.gaps
        )
    await db.executemany(
        "INSERT INTO blocks (gateway, epoch, seq, payload, alg, kid, sig, hash, received_at,"
        " domain, mine_code, prev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        block_rows,
    )
    await db.executemany(
        "INSERT INTO readings (gateway, epoch, seq, idx, point, quota, t, value, unit, quality,"
        " flags) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        reading_rows,
    )
    # A resent old reading must not replace a newer one.
    await db.executemany(
        "INSERT INTO latest (gateway, point, quota, t, value, unit, quality, flags)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (gateway, point) DO UPDATE SET quota = excluded.quota, t = excluded.t,"
        " value = excluded.value, unit = excluded.unit, quality = excluded.quality,"
        " flags = excluded.flags WHERE excluded.t >= latest.t",
        [(row[0], *row[4:]) for row in reading_rows],
    )
    await db.executemany(
        "INSERT INTO gaps (gateway, epoch, seq, idx, kind, t, reason, lost, point, detected_at,"
        " declared_epoch, from_seq, to_seq, t_from, t_to)"
        " VALUES (?, ?, ?, ?, 'record', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        gap_rows,
    )


def _alarm_state(row: Row) -> AlarmState:
    raised_in = None if row[13] is None else (str(row[13]), int(row[14]), int(row[15]))
    cleared_in = None if row[16] is None else (str(row[16]), int(row[17]), int(row[18]))
    return AlarmState(
        gateway=row[0],
        alarm_id=row[1],
        point=row[2],
        quota=row[3],
        level=row[4],
        raised_at=row[5],
        cleared_at=row[6],
        value=row[7],
        threshold=row[8],
        unit=row[9],
        trigger_t=row[10],
        related=row[11],
        detail=row[12],
        raised_in=raised_in,
        cleared_in=cleared_in,
    )


async def _stored_alarms(
    db: aiosqlite.Connection, keys: Sequence[AlarmKey]
) -> dict[AlarmKey, AlarmState]:
    found: dict[AlarmKey, AlarmState] = {}
    for chunk in _chunks(sorted(set(keys))):
        rows = await db.execute_fetchall(
            f"WITH k (gateway, alarm_id) AS (VALUES {_values(2, len(chunk))})"
            f" SELECT {_ALARM_COLUMNS} FROM k CROSS JOIN alarms a"
            " ON a.gateway = k.gateway AND a.alarm_id = k.alarm_id",
            [part for key in chunk for part in key],
        )
        found.update(((row[0], row[1]), _alarm_state(row)) for row in rows)
    return found


async def _pair_alarms(db: aiosqlite.Connection, blocks: Sequence[IncomingBlock]) -> None:
    keys = [alarm_key(b.block.header.gateway, event) for b in blocks for event in b.entries.alarms]
    if not keys:
        return
    merged = merge_alarms(await _stored_alarms(db, keys), blocks)
    await db.executemany(
        "INSERT INTO alarms (gateway, alarm_id, point, quota, level, raised_at, cleared_at,"
        " since, value, threshold, unit, trigger_t, related, detail, raise_epoch, raise_seq,"
        " raise_idx, clear_epoch, clear_seq, clear_idx)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (gateway, alarm_id) DO UPDATE SET point = excluded.point,"
        " quota = excluded.quota, level = excluded.level, raised_at = excluded.raised_at,"
        " cleared_at = excluded.cleared_at, since = excluded.since, value = excluded.value,"
        " threshold = excluded.threshold, unit = excluded.unit, trigger_t = excluded.trigger_t,"
        " related = excluded.related, detail = excluded.detail,"
        " raise_epoch = excluded.raise_epoch, raise_seq = excluded.raise_seq,"
        " raise_idx = excluded.raise_idx, clear_epoch = excluded.clear_epoch,"
        " clear_seq = excluded.clear_seq, clear_idx = excluded.clear_idx",
        [
            (
                a.gateway,
                a.alarm_id,
                a.point,
                a.quota,
                a.level,
                a.raised_at,
                a.cleared_at,
                a.since,
                a.value,
                a.threshold,
                a.unit,
                a.trigger_t,
                a.related,
                a.detail,
                *(a.raised_in or (None, None, None)),
                *(a.cleared_in or (None, None, None)),
            )
            for a in merged.values()
        ],
    )


async def _store_metas(db: aiosqlite.Connection, metas: Sequence[IncomingMeta]) -> None:
    await db.executemany(
        "INSERT INTO metas (gateway, hash, payload, alg, kid, sig, issued_at, received_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (gateway, hash) DO NOTHING",
        [
            (
                m.meta.gateway,
                block_hash(m.payload),
                m.payload,
                m.signature.alg,
                m.signature.kid,
                m.signature.sig,
                m.issued_at,
                m.received_at,
            )
            for m in metas
        ],
    )
    # The newest description wins, whatever order the messages arrive in.
    await db.executemany(
        "INSERT INTO point_meta (gateway, point, quota, unit, name, device, thresholds,"
        " issued_at, meta_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (gateway, point) DO UPDATE SET quota = excluded.quota,"
        " unit = excluded.unit, name = excluded.name, device = excluded.device,"
        " thresholds = excluded.thresholds, issued_at = excluded.issued_at,"
        " meta_hash = excluded.meta_hash WHERE excluded.issued_at >= point_meta.issued_at",
        [
            (
                m.meta.gateway,
                p.point,
                p.quota,
                p.unit,
                p.name,
                p.device,
                json.dumps(dict(sorted(p.thresholds.items()))),
                m.issued_at,
                block_hash(m.payload),
            )
            for m in metas
            for p in m.points
        ],
    )


def _spans(text: str) -> tuple[tuple[int, int | None], ...]:
    return tuple((int(low), None if high is None else int(high)) for low, high in json.loads(text))


async def _stream_states(
    db: aiosqlite.Connection, streams: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], StreamState]:
    found: dict[tuple[str, str], StreamState] = {}
    for chunk in _chunks(sorted(set(streams))):
        rows = await db.execute_fetchall(
            f"WITH k (gateway, epoch) AS (VALUES {_values(2, len(chunk))})"
            " SELECT s.gateway, s.epoch, s.acked_through, s.max_seq, s.missing, s.declared,"
            " b.hash, s.conflict"
            " FROM k CROSS JOIN ingest_state s ON s.gateway = k.gateway AND s.epoch = k.epoch"
            " LEFT JOIN blocks b ON b.gateway = s.gateway AND b.epoch = s.epoch"
            " AND b.seq = s.acked_through",
            [part for stream in chunk for part in stream],
        )
        for row in rows:
            missing = tuple((int(low), int(high)) for low, high in json.loads(row[4]))
            found[(row[0], row[1])] = StreamState(
                row[0], row[1], row[2], row[3], missing, _spans(row[5]), row[6], bool(row[7])
            )
    return found


async def _advance_streams(
    db: aiosqlite.Connection,
    blocks: Sequence[IncomingBlock],
    outcomes: Sequence[Outcome],
    broken: Collection[tuple[str, str]],
) -> dict[tuple[str, str], StreamState]:
    changes = stream_changes(blocks, outcomes, broken)
    before = await _stream_states(db, list(changes))
    after = {
        stream: progress(before.get(stream, StreamState(*stream)), change)
        for stream, change in changes.items()
    }
    # The batch's blocks are inserted already: the hash at acked_through is in the table.
    acked = [(*stream, s.acked_through) for stream, s in after.items() if s.acked_through]
    hashes = await _stored_links(db, acked)
    for stream, state in after.items():
        link = hashes.get((*stream, state.acked_through))
        after[stream] = replace(state, acked_hash=None if link is None else link[0])
    # first_seen is set by the first stored block (0 until then: see the schema).
    await db.executemany(
        "INSERT INTO ingest_state (gateway, epoch, acked_through, max_seq, missing, declared,"
        " conflict, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (gateway, epoch) DO UPDATE SET acked_through = excluded.acked_through,"
        " max_seq = excluded.max_seq, missing = excluded.missing, declared = excluded.declared,"
        " conflict = max(ingest_state.conflict, excluded.conflict),"
        " first_seen = CASE WHEN ingest_state.first_seen = 0 THEN excluded.first_seen"
        " ELSE ingest_state.first_seen END,"
        " last_seen = max(ingest_state.last_seen, excluded.last_seen)",
        [
            (
                *stream,
                state.acked_through,
                state.max_seq,
                json.dumps([list(r) for r in state.missing]),
                json.dumps([list(r) for r in state.declared]),
                int(state.conflict),
                changes[stream].seen,
                changes[stream].seen,
            )
            for stream, state in after.items()
        ],
    )
    changed = [s for s in after if s not in before or after[s].missing != before[s].missing]
    await db.executemany(
        "DELETE FROM gaps WHERE gateway = ? AND kind = 'sequence' AND epoch = ?", changed
    )
    batch_seen = max((b.received_at for b in blocks), default=0.0)
    await db.executemany(
        "INSERT INTO gaps (gateway, epoch, kind, from_seq, to_seq, reason, lost, detected_at)"
        " VALUES (?, ?, 'sequence', ?, ?, 'missing', NULL, ?)",
        [
            (*stream, low, high, changes[stream].seen or batch_seen)
            for stream in changed
            for low, high in after[stream].missing
        ],
    )
    return after


async def _apply_statuses(db: aiosqlite.Connection, statuses: Sequence[StatusUpdate]) -> None:
    await db.executemany(
        "INSERT INTO gateway_status (gateway, online, last_seen) VALUES (?, ?, ?)"
        " ON CONFLICT (gateway) DO UPDATE SET online = excluded.online,"
        " last_seen = excluded.last_seen WHERE excluded.last_seen >= gateway_status.last_seen",
        [(s.gateway, int(s.online), s.at) for s in statuses],
    )


def _latest_where(
    scope: Scope, enterprise: str | None, gateway: str | None, after: PointAfter | None
) -> tuple[str, list[object]]:
    sql, params = _scope_clause(scope, "g.district")
    if enterprise is not None:
        sql += " AND g.enterprise = ?"
        params.append(enterprise)
    if gateway is not None:
        sql += " AND l.gateway = ?"
        params.append(gateway)
    if after is not None:
        sql += " AND (l.gateway, l.point) > (?, ?)"
        params.extend(after)
    return sql, params
