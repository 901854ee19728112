"""One batch as one PostgreSQL transaction: SQLite's ingest, step for step, on set lookups.

The caller (`PostgresStorage.ingest`) has created the partitions the batch's readings need
and opened the transaction; `ingest_batch` first takes the lock of every gateway the batch
writes (`collector.storage.postgres.locks`), then makes the same lookups and the same pure
decisions (`collector.storage.core`) as the SQLite backend. Lookups pass their keys as arrays
(`unnest`), readings go in with COPY, the small tables with `executemany`.

The live feed's rows come last: a batch that adds readings or journal entries takes the feed
lock, COPYs its readings, appends its journal and notifies listening collectors, all just
before COMMIT, so that feed ids follow commit order (`collector.storage.postgres.feed`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from typing import Final

from collector.audit.chain import ActionEntry
from collector.feed.core import alarm_entry, gap_record_entries, hole_entries, status_entries
from collector.model import (
    AlarmState,
    AuditEntry,
    BatchResult,
    IncomingBlock,
    IncomingMeta,
    IngestBatch,
    Outcome,
    StatusUpdate,
    StreamState,
)
from collector.storage.base import StorageError
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
    flags_text,
    keys_to_look_up,
    merge_alarms,
    neighbours,
    newest_readings,
    progress,
    reading_keys,
    stream_changes,
    unique_readings,
)
from collector.storage.postgres import audit, rows
from collector.storage.postgres.connection import Db
from collector.storage.postgres.feed import (
    finish_feed_commit,
    held_statuses,
    take_feed_lock,
    write_journal,
)
from collector.storage.postgres.locks import lock_gateways
from collector.storage.postgres.presence import record_presence
from collector.storage.postgres.registry import adopt_keys
from collector.storage.postgres.schema import SCHEMA_VERSION
from collector.storage.rollups import MinuteRollup, minute_rollups
from specs.block import block_hash

Stream = tuple[str, str]
ReadingRecord = tuple[str, str, int, int, str, str, float, float | None, str, str, str]
"""A `readings` row as COPY sends it (READING_FIELDS)."""

READING_FIELDS: Final = (
    "gateway",
    "epoch",
    "seq",
    "idx",
    "point",
    "quota",
    "t",
    "value",
    "unit",
    "quality",
    "flags",
)


def batch_gateways(batch: IngestBatch) -> set[str]:
    """Every gateway whose state the batch may write: the locks its transaction takes."""
    return {
        *(incoming.block.header.gateway for incoming in batch.blocks),
        *(status.gateway for status in batch.statuses),
        *(meta.meta.gateway for meta in batch.metas),
    }


def reading_times(batch: IngestBatch) -> list[float]:
    """The times of every reading the batch may store (their months need partitions)."""
    return [r.t for incoming in batch.blocks for r in incoming.entries.readings]


async def ingest_batch(db: Db, batch: IngestBatch) -> BatchResult:
    """Store blocks once, audit rejections, apply statuses and metas (inside a transaction)."""
    await _refuse_a_newer_schema(db)
    await lock_gateways(db, batch_gateways(batch))
    # The batch's keys and their neighbours: to classify, and to check the chain.
    links = await stored_links(db, neighbours(block_key(b) for b in batch.blocks))
    outcomes = classify(batch.blocks, {key: link[0] for key, link in links.items()})
    fresh = [b for b, o in zip(batch.blocks, outcomes, strict=True) if o is Outcome.STORED]
    breaks = chain_breaks(fresh, links)
    keys = reading_keys(fresh)
    newest = await _newest_times(db, {key[:2] for key in keys})
    held = await _stored_readings(db, keys_to_look_up(keys, newest))
    new, repeated = unique_readings(fresh, held, keys)
    await _insert_blocks(db, new)
    await _fold_rollups(db, minute_rollups(new))
    alarms = await _pair_alarms(db, new)
    refused_keys = await adopt_keys(db, new, batch.key_overlap)
    audits = [
        *batch.audits,
        *(rejected for b in new for rejected in b.entries.rejected),
        *refused_keys,
        *dedupe_audits(batch.blocks, outcomes),
        *repeated,
        *(found.audit for found in breaks),
    ]
    broken = {found.stream for found in breaks}
    before, streams = await _advance_streams(db, batch.blocks, outcomes, broken)
    statuses_held = await held_statuses(db, {s.gateway for s in batch.statuses})
    await _apply_statuses(db, batch.statuses)
    await _store_metas(db, batch.metas)
    await record_presence(db, batch)
    # The live feed, after everything else (see the module docstring); SQLite's journal.
    seen = max((b.received_at for b in batch.blocks), default=0.0)
    entries = [
        *gap_record_entries(new),
        *hole_entries(before, streams, seen),
        *(alarm_entry(state, seen) for state in alarms.values()),
        *status_entries(statuses_held, batch.statuses),
    ]
    # The audit chain's lock comes after the gateways' and before the feed's (locks.py).
    await _insert_audits(db, audits, batch.actions)
    records = reading_records(new)
    if records or entries:
        await take_feed_lock(db)
        await _copy_readings(db, records)
        await write_journal(db, entries)
        await finish_feed_commit(db)
    return BatchResult(outcomes, streams)


async def _refuse_a_newer_schema(db: Db) -> None:
    """A collector still running after a newer one migrated stops writing, batch by batch.

    It would skip what the newer schema keeps (journal, rollups, ...); refused, the batch is
    not acknowledged and the agents resend it to a collector that understands the schema.
    """
    version = await db.fetchval("SELECT max(version) FROM schema_migrations")
    if version is not None and int(version) > SCHEMA_VERSION:
        raise StorageError(
            f"the database schema is at version {version}, newer than this collector's"
            f" {SCHEMA_VERSION}: it must be upgraded before it may write"
        )


async def stored_links(db: Db, keys: Collection[BlockKey]) -> dict[BlockKey, Link]:
    """(hash, prev) of the stored blocks among `keys`."""
    if not keys:
        return {}
    gateways, epochs, seqs = zip(*sorted(set(keys)), strict=True)
    found = await db.fetch(
        "SELECT b.gateway, b.epoch, b.seq, b.hash, b.prev"
        " FROM unnest($1::text[], $2::text[], $3::bigint[]) AS k (gateway, epoch, seq)"
        " JOIN blocks b ON b.gateway = k.gateway AND b.epoch = k.epoch AND b.seq = k.seq",
        list(gateways),
        list(epochs),
        list(seqs),
    )
    return {(row[0], row[1], row[2]): (row[3], row[4]) for row in found}


async def _newest_times(
    db: Db, series: Collection[tuple[str, str]]
) -> dict[tuple[str, str], float]:
    """The newest stored t of each (gateway, point) that has readings.

    Read from `latest`, which this module writes with every stored reading in the same
    transaction, keeping the newest: a key lookup instead of one index probe per partition.
    """
    if not series:
        return {}
    gateways, points = zip(*sorted(series), strict=True)
    found = await db.fetch(
        "SELECT l.gateway, l.point, l.t FROM unnest($1::text[], $2::text[]) AS k (gateway, point)"
        " JOIN latest l ON l.gateway = k.gateway AND l.point = k.point",
        list(gateways),
        list(points),
    )
    return {(row[0], row[1]): row[2] for row in found}


async def _stored_readings(db: Db, keys: Sequence[ReadingKey]) -> dict[ReadingKey, ReadingValue]:
    if not keys:
        return {}
    gateways, points, times = zip(*sorted(set(keys)), strict=True)
    found = await db.fetch(
        "SELECT r.gateway, r.point, r.t, r.value, r.unit, r.quality"
        " FROM unnest($1::text[], $2::text[], $3::float8[]) AS k (gateway, point, t)"
        " JOIN readings r ON r.gateway = k.gateway AND r.point = k.point AND r.t = k.t",
        list(gateways),
        list(points),
        list(times),
    )
    return {(row[0], row[1], row[2]): (row[3], row[4], row[5]) for row in found}


def reading_records(blocks: Iterable[IncomingBlock]) -> list[ReadingRecord]:
    """The `readings` rows of `blocks`, in block and record order."""
    return [
        (
            incoming.block.header.gateway,
            incoming.block.header.epoch,
            incoming.block.header.seq,
            r.idx,
            r.point,
            r.quota,
            r.t,
            r.value,
            r.unit,
            r.quality,
            flags_text(r.flags),
        )
        for incoming in blocks
        for r in incoming.entries.readings
    ]


async def _insert_blocks(db: Db, blocks: Sequence[IncomingBlock]) -> None:
    if not blocks:
        return
    await db.executemany(
        "INSERT INTO blocks (gateway, epoch, seq, payload, alg, kid, sig, hash, received_at,"
        " domain, mine_code, prev) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        [
            (
                b.block.header.gateway,
                b.block.header.epoch,
                b.block.header.seq,
                b.block.payload,
                b.signature.alg,
                b.signature.kid,
                b.signature.sig,
                b.block.digest,
                b.received_at,
                b.block.header.domain,
                b.block.header.mine_code,
                b.block.header.prev,
            )
            for b in blocks
        ],
    )
    # The readings themselves go in last, under the feed lock (`_copy_readings`).
    newest = newest_readings(blocks)
    if newest:
        # One row per point (a statement may not upsert a row twice); a resent old reading
        # must not replace a newer one.
        columns = zip(
            *(
                (gateway, r.point, r.quota, r.t, r.value, r.unit, r.quality, flags_text(r.flags))
                for gateway, r in newest
            ),
            strict=True,
        )
        await db.execute(
            "INSERT INTO latest (gateway, point, quota, t, value, unit, quality, flags)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[],"
            " $5::float8[], $6::text[], $7::text[], $8::text[])"
            " ON CONFLICT (gateway, point) DO UPDATE SET quota = excluded.quota,"
            " t = excluded.t, value = excluded.value, unit = excluded.unit,"
            " quality = excluded.quality, flags = excluded.flags WHERE excluded.t >= latest.t",
            *(list(column) for column in columns),
        )
    gaps = [
        (
            b.block.header.gateway,
            b.block.header.epoch,
            b.block.header.seq,
            g.idx,
            g.t,
            g.reason.value,
            g.lost,
            g.point,
            b.received_at,
            g.epoch,
            g.from_seq,
            g.to_seq,
            g.t_from,
            g.t_to,
        )
        for b in blocks
        for g in b.entries.gaps
    ]
    if gaps:
        await db.executemany(
            "INSERT INTO gaps (gateway, epoch, seq, idx, kind, t, reason, lost, point,"
            " detected_at, declared_epoch, from_seq, to_seq, t_from, t_to)"
            " VALUES ($1, $2, $3, $4, 'record', $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            gaps,
        )


async def _copy_readings(db: Db, records: Sequence[ReadingRecord]) -> None:
    """COPY the batch's readings (under the feed lock: their ids are feed positions)."""
    if records:
        # Every writer of these gateways holds their locks, and unique_readings dropped the
        # keys stored already: no row can conflict, so COPY (no ON CONFLICT) is safe.
        await db.copy_records_to_table("readings", records=records, columns=READING_FIELDS)


async def _stored_alarms(db: Db, keys: Sequence[AlarmKey]) -> dict[AlarmKey, AlarmState]:
    gateways, ids = zip(*sorted(set(keys)), strict=True)
    found = await db.fetch(
        f"SELECT {rows.ALARM_COLUMNS}"
        " FROM unnest($1::text[], $2::text[]) AS k (gateway, alarm_id)"
        " JOIN alarms a ON a.gateway = k.gateway AND a.alarm_id = k.alarm_id",
        list(gateways),
        list(ids),
    )
    return {(row[0], row[1]): rows.alarm_state(row) for row in found}


async def _pair_alarms(db: Db, blocks: Sequence[IncomingBlock]) -> dict[AlarmKey, AlarmState]:
    """Merge the blocks' alarm events into the stored alarms; the states written."""
    keys = [alarm_key(b.block.header.gateway, event) for b in blocks for event in b.entries.alarms]
    if not keys:
        return {}
    merged = merge_alarms(await _stored_alarms(db, keys), blocks)
    await db.executemany(
        "INSERT INTO alarms (gateway, alarm_id, point, quota, level, raised_at, cleared_at,"
        " since, value, threshold, unit, trigger_t, related, detail, raise_epoch, raise_seq,"
        " raise_idx, clear_epoch, clear_seq, clear_idx) VALUES ($1, $2, $3, $4, $5, $6, $7,"
        " $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)"
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
    return merged


# The merge of collector.storage.rollups.merged, row by row in SQL.
_FOLD_ROLLUPS: Final = """
INSERT INTO readings_1m AS o
    (gateway, point, minute, quota, unit, n, lo, hi, total, newest_t, last_t, last_value)
SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[], $5::text[],
                     $6::bigint[], $7::float8[], $8::float8[], $9::float8[], $10::float8[],
                     $11::float8[], $12::float8[])
ON CONFLICT (gateway, point, minute) DO UPDATE SET
    n = o.n + excluded.n,
    lo = least(o.lo, excluded.lo),
    hi = greatest(o.hi, excluded.hi),
    total = CASE WHEN o.total IS NULL THEN excluded.total
                 WHEN excluded.total IS NULL THEN o.total
                 ELSE o.total + excluded.total END,
    quota = CASE WHEN excluded.newest_t >= o.newest_t THEN excluded.quota ELSE o.quota END,
    unit = CASE WHEN excluded.newest_t >= o.newest_t THEN excluded.unit ELSE o.unit END,
    newest_t = greatest(o.newest_t, excluded.newest_t),
    last_value = CASE WHEN excluded.last_t IS NOT NULL
                       AND (o.last_t IS NULL OR excluded.last_t >= o.last_t)
                      THEN excluded.last_value ELSE o.last_value END,
    last_t = greatest(o.last_t, excluded.last_t)
"""


async def _fold_rollups(db: Db, rollups: Sequence[MinuteRollup]) -> None:
    """Merge a batch's per-minute rollups into the held ones (partitions exist: see store)."""
    if not rollups:
        return
    columns = zip(
        *(
            (r.gateway, r.point, r.minute, r.quota, r.unit, r.n, r.lo, r.hi, r.total,
             r.newest_t, r.last_t, r.last_value)
            for r in sorted(rollups, key=lambda r: (r.gateway, r.point, r.minute))
        ),
        strict=True,
    )  # fmt: skip
    await db.execute(_FOLD_ROLLUPS, *(list(column) for column in columns))


async def _insert_audits(
    db: Db, audits: Sequence[AuditEntry], actions: Sequence[ActionEntry] = ()
) -> None:
    """Aggregate the batch's rejections into the audit chain (collector.audit.chain).

    Takes AUDIT_LOCK; rows whose minute is over by the newest rejection's time are sealed.
    """
    if audits or actions:
        # The batch's command results (`up/cmd`) are rows of their own, chained at once.
        now = max([*(a.at for a in audits), *(a.at for a in actions)])
        await audit.append(db, audits, actions, now=now)


async def _store_metas(db: Db, metas: Sequence[IncomingMeta]) -> None:
    if not metas:
        return
    await db.executemany(
        "INSERT INTO metas (gateway, hash, payload, alg, kid, sig, issued_at, received_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (gateway, hash) DO NOTHING",
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
    described = [
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
            p.poll,
        )
        for m in metas
        for p in m.points
    ]
    if not described:
        return
    # The newest description wins, whatever order the messages arrive in.
    await db.executemany(
        "INSERT INTO point_meta (gateway, point, quota, unit, name, device, thresholds,"
        " issued_at, meta_hash, poll) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " ON CONFLICT (gateway, point) DO UPDATE SET quota = excluded.quota,"
        " unit = excluded.unit, name = excluded.name, device = excluded.device,"
        " thresholds = excluded.thresholds, issued_at = excluded.issued_at,"
        " meta_hash = excluded.meta_hash, poll = excluded.poll"
        " WHERE excluded.issued_at >= point_meta.issued_at",
        described,
    )


async def stream_states(db: Db, streams: Collection[Stream]) -> dict[Stream, StreamState]:
    """The stored progress of `streams` (those with a row), with the hash at acked_through."""
    if not streams:
        return {}
    gateways, epochs = zip(*sorted(set(streams)), strict=True)
    found = await db.fetch(
        "SELECT s.gateway, s.epoch, s.acked_through, s.max_seq, s.missing, s.declared,"
        " b.hash, s.conflict"
        " FROM unnest($1::text[], $2::text[]) AS k (gateway, epoch)"
        " JOIN ingest_state s ON s.gateway = k.gateway AND s.epoch = k.epoch"
        " LEFT JOIN blocks b ON b.gateway = s.gateway AND b.epoch = s.epoch"
        " AND b.seq = s.acked_through",
        list(gateways),
        list(epochs),
    )
    return {
        (row[0], row[1]): StreamState(
            row[0],
            row[1],
            row[2],
            row[3],
            rows.holes(row[4]),
            rows.spans(row[5]),
            row[6],
            bool(row[7]),
        )
        for row in found
    }


async def _advance_streams(
    db: Db,
    blocks: Sequence[IncomingBlock],
    outcomes: Sequence[Outcome],
    broken: Collection[Stream],
) -> tuple[dict[Stream, StreamState], dict[Stream, StreamState]]:
    """Advance the batch's streams; their states (of those that had one) before and after."""
    changes = stream_changes(blocks, outcomes, broken)
    before = await stream_states(db, list(changes))
    after = {
        stream: progress(before.get(stream, StreamState(*stream)), change)
        for stream, change in changes.items()
    }
    # The batch's blocks are inserted already: the hash at acked_through is in the table.
    acked = [(*stream, s.acked_through) for stream, s in after.items() if s.acked_through]
    hashes = await stored_links(db, acked)
    for stream, state in after.items():
        link = hashes.get((*stream, state.acked_through))
        after[stream] = replace(state, acked_hash=None if link is None else link[0])
    if not after:
        return before, after
    # first_seen is set by the first stored block (0 until then, as in SQLite).
    await db.executemany(
        "INSERT INTO ingest_state (gateway, epoch, acked_through, max_seq, missing, declared,"
        " conflict, first_seen, last_seen) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " ON CONFLICT (gateway, epoch) DO UPDATE SET acked_through = excluded.acked_through,"
        " max_seq = excluded.max_seq, missing = excluded.missing, declared = excluded.declared,"
        " conflict = ingest_state.conflict OR excluded.conflict,"
        " first_seen = CASE WHEN ingest_state.first_seen = 0 THEN excluded.first_seen"
        " ELSE ingest_state.first_seen END,"
        " last_seen = greatest(ingest_state.last_seen, excluded.last_seen)",
        [
            (
                *stream,
                state.acked_through,
                state.max_seq,
                rows.json_ranges(state.missing),
                rows.json_ranges(state.declared),
                state.conflict,
                changes[stream].seen,
                changes[stream].seen,
            )
            for stream, state in after.items()
        ],
    )
    changed = [s for s in after if s not in before or after[s].missing != before[s].missing]
    if changed:
        await db.executemany(
            "DELETE FROM gaps WHERE gateway = $1 AND kind = 'sequence' AND epoch = $2", changed
        )
    batch_seen = max((b.received_at for b in blocks), default=0.0)
    holes = [
        (*stream, low, high, changes[stream].seen or batch_seen)
        for stream in changed
        for low, high in after[stream].missing
    ]
    if holes:
        await db.executemany(
            "INSERT INTO gaps (gateway, epoch, kind, from_seq, to_seq, reason, lost,"
            " detected_at) VALUES ($1, $2, 'sequence', $3, $4, 'missing', NULL, $5)",
            holes,
        )
    return before, after


async def _apply_statuses(db: Db, statuses: Sequence[StatusUpdate]) -> None:
    if not statuses:
        return
    await db.executemany(
        "INSERT INTO gateway_status (gateway, online, last_seen) VALUES ($1, $2, $3)"
        " ON CONFLICT (gateway) DO UPDATE SET online = excluded.online,"
        " last_seen = excluded.last_seen WHERE excluded.last_seen >= gateway_status.last_seen",
        [(s.gateway, s.online, s.at) for s in statuses],
    )
