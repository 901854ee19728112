"""The SQL steps of one ingest batch, run inside the caller's write transaction.

Each batch is one `BEGIN IMMEDIATE` transaction built from a handful of `executemany` calls,
because aiosqlite pays a thread hop per call.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import Final

import aiosqlite

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
from collector.storage.rollups import minute_rollups
from collector.storage.sqlite import audit
from collector.storage.sqlite.journal import held_statuses, write_journal
from collector.storage.sqlite.presence import record_presence
from collector.storage.sqlite.registry import adopt_keys
from collector.storage.sqlite.rollups import fold_rollups
from collector.storage.sqlite.sql import ALARM_COLUMNS, alarm_state, chunks, values
from specs.block import block_hash

# Readings are looked up by the thousand (a batch holds up to batch_max blocks of them).
_READING_CHUNK: Final = 2000


async def store_batch(db: aiosqlite.Connection, batch: IngestBatch) -> BatchResult:
    """Store blocks once, audit rejections, apply statuses: the whole batch, one transaction."""
    # The batch's keys and their neighbours: to classify, and to check the chain.
    links = await _stored_links(db, neighbours(block_key(b) for b in batch.blocks))
    outcomes = classify(batch.blocks, {key: link[0] for key, link in links.items()})
    fresh = [b for b, o in zip(batch.blocks, outcomes, strict=True) if o is Outcome.STORED]
    breaks = chain_breaks(fresh, links)
    keys = reading_keys(fresh)
    newest = await _newest_times(db, {key[:2] for key in keys})
    held = await _stored_readings(db, keys_to_look_up(keys, newest))
    new, repeated = unique_readings(fresh, held, keys)
    await _insert_blocks(db, new)
    await fold_rollups(db, minute_rollups(new))
    alarms = await _pair_alarms(db, new)
    refused_keys = await adopt_keys(db, new, batch.key_overlap)
    await _insert_audits(
        db,
        [
            *batch.audits,
            *(rejected for b in new for rejected in b.entries.rejected),
            *refused_keys,
            *dedupe_audits(batch.blocks, outcomes),
            *repeated,
            *(found.audit for found in breaks),
        ],
        batch.actions,
    )
    broken = {found.stream for found in breaks}
    before, streams = await _advance_streams(db, batch.blocks, outcomes, broken)
    statuses_held = await held_statuses(db, {s.gateway for s in batch.statuses})
    await _apply_statuses(db, batch.statuses)
    await _store_metas(db, batch.metas)
    await record_presence(db, batch)
    # The live feed's journal, after the readings (collector.feed.core).
    seen = max((b.received_at for b in batch.blocks), default=0.0)
    await write_journal(
        db,
        [
            *gap_record_entries(new),
            *hole_entries(before, streams, seen),
            *(alarm_entry(state, seen) for state in alarms.values()),
            *status_entries(statuses_held, batch.statuses),
        ],
    )
    return BatchResult(outcomes, streams)


async def _stored_links(
    db: aiosqlite.Connection, keys: Collection[BlockKey]
) -> dict[BlockKey, Link]:
    """(hash, prev) of the stored blocks among `keys`."""
    found: dict[BlockKey, Link] = {}
    for chunk in chunks(sorted(set(keys))):
        rows = await db.execute_fetchall(
            f"WITH k (gateway, epoch, seq) AS (VALUES {values(3, len(chunk))})"
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
    for chunk in chunks(sorted(series)):
        rows = await db.execute_fetchall(
            f"WITH k (gateway, point) AS (VALUES {values(2, len(chunk))})"
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
    for chunk in chunks(sorted(set(keys)), _READING_CHUNK):
        rows = await db.execute_fetchall(
            f"WITH k (gateway, point, t) AS (VALUES {values(3, len(chunk))})"
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
                flags_text(r.flags),
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
        [
            (gateway, r.point, r.quota, r.t, r.value, r.unit, r.quality, flags_text(r.flags))
            for gateway, r in newest_readings(blocks)
        ],
    )
    await db.executemany(
        "INSERT INTO gaps (gateway, epoch, seq, idx, kind, t, reason, lost, point, detected_at,"
        " declared_epoch, from_seq, to_seq, t_from, t_to)"
        " VALUES (?, ?, ?, ?, 'record', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        gap_rows,
    )


async def _stored_alarms(
    db: aiosqlite.Connection, keys: Sequence[AlarmKey]
) -> dict[AlarmKey, AlarmState]:
    found: dict[AlarmKey, AlarmState] = {}
    for chunk in chunks(sorted(set(keys))):
        rows = await db.execute_fetchall(
            f"WITH k (gateway, alarm_id) AS (VALUES {values(2, len(chunk))})"
            f" SELECT {ALARM_COLUMNS} FROM k CROSS JOIN alarms a"
            " ON a.gateway = k.gateway AND a.alarm_id = k.alarm_id",
            [part for key in chunk for part in key],
        )
        found.update(((row[0], row[1]), alarm_state(row)) for row in rows)
    return found


async def _pair_alarms(
    db: aiosqlite.Connection, blocks: Sequence[IncomingBlock]
) -> dict[AlarmKey, AlarmState]:
    """Merge the blocks' alarm events into the stored alarms; the states written."""
    keys = [alarm_key(b.block.header.gateway, event) for b in blocks for event in b.entries.alarms]
    if not keys:
        return {}
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
    return merged


async def _insert_audits(
    db: aiosqlite.Connection, audits: Sequence[AuditEntry], actions: Sequence[ActionEntry] = ()
) -> None:
    """Aggregate the batch's rejections into the audit chain (collector.audit.chain).

    Rows whose minute is over by the newest rejection's time are sealed here too.
    """
    if audits or actions:
        # The batch's command results (`up/cmd`) are rows of their own, chained at once.
        now = max([*(a.at for a in audits), *(a.at for a in actions)])
        await audit.append(db, audits, actions, now=now)


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
        " issued_at, meta_hash, poll) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (gateway, point) DO UPDATE SET quota = excluded.quota,"
        " unit = excluded.unit, name = excluded.name, device = excluded.device,"
        " thresholds = excluded.thresholds, issued_at = excluded.issued_at,"
        " meta_hash = excluded.meta_hash, poll = excluded.poll"
        " WHERE excluded.issued_at >= point_meta.issued_at",
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
                p.poll,
            )
            for m in metas
            for p in m.points
        ],
    )


def _spans(text: str) -> tuple[tuple[int, int | None], ...]:
    return tuple((int(low), None if high is None else int(high)) for low, high in json.loads(text))


async def stream_states(
    db: aiosqlite.Connection, streams: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], StreamState]:
    """The stored progress of each of `streams` that has any, with the hash at acked_through."""
    found: dict[tuple[str, str], StreamState] = {}
    for chunk in chunks(sorted(set(streams))):
        rows = await db.execute_fetchall(
            f"WITH k (gateway, epoch) AS (VALUES {values(2, len(chunk))})"
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
) -> tuple[dict[tuple[str, str], StreamState], dict[tuple[str, str], StreamState]]:
    """Advance the batch's streams; their states (of those that had one) before and after."""
    changes = stream_changes(blocks, outcomes, broken)
    before = await stream_states(db, list(changes))
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
    return before, after


async def _apply_statuses(db: aiosqlite.Connection, statuses: Sequence[StatusUpdate]) -> None:
    await db.executemany(
        "INSERT INTO gateway_status (gateway, online, last_seen) VALUES (?, ?, ?)"
        " ON CONFLICT (gateway) DO UPDATE SET online = excluded.online,"
        " last_seen = excluded.last_seen WHERE excluded.last_seen >= gateway_status.last_seen",
        [(s.gateway, int(s.online), s.at) for s in statuses],
    )
