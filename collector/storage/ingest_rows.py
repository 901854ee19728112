"""The rows an ingest batch writes, and the statements both backends write them with.

Pure: from the batch's blocks, metas, alarms and streams to parameter tuples in each table's
column order. The statements that are the same SQL on SQLite and PostgreSQL are here, with `?`
placeholders (`collector.storage.postgres.ingest.numbered` turns them into `$n`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Final

from collector.model import IncomingBlock, IncomingMeta, StatusUpdate, StreamState
from collector.readmodel import AlarmState
from collector.storage.core import Stream, StreamChange
from collector.storage.readings import flags_text, newest_readings
from collector.storage.records import json_ranges
from specs.block import block_hash

Series = tuple[str, str]
Params = tuple[object, ...]
ReadingRecord = tuple[str, str, int, int, str, str, float, float | None, str, str, str]
"""A `readings` row (READING_FIELDS)."""

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

# The statements both backends run as they are, with `?` placeholders.
INSERT_BLOCK: Final = (
    "INSERT INTO blocks (gateway, epoch, seq, payload, alg, kid, sig, hash, received_at,"
    " domain, mine_code, prev, newest_t) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
INSERT_READING: Final = (
    f"INSERT INTO readings ({', '.join(READING_FIELDS)})"
    f" VALUES ({', '.join('?' * len(READING_FIELDS))})"
)
INSERT_RECORD_GAP: Final = (
    "INSERT INTO gaps (gateway, epoch, seq, idx, kind, t, reason, lost, point, detected_at,"
    " declared_epoch, from_seq, to_seq, t_from, t_to)"
    " VALUES (?, ?, ?, ?, 'record', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
UPSERT_ALARM: Final = (
    "INSERT INTO alarms (gateway, alarm_id, point, quota, level, raised_at, cleared_at,"
    " since, value, threshold, unit, trigger_t, related, detail, raise_epoch, raise_seq,"
    " raise_idx, clear_epoch, clear_seq, clear_idx, raise_ahead, clear_ahead)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (gateway, alarm_id) DO UPDATE SET point = excluded.point,"
    " quota = excluded.quota, level = excluded.level, raised_at = excluded.raised_at,"
    " cleared_at = excluded.cleared_at, since = excluded.since, value = excluded.value,"
    " threshold = excluded.threshold, unit = excluded.unit, trigger_t = excluded.trigger_t,"
    " related = excluded.related, detail = excluded.detail,"
    " raise_epoch = excluded.raise_epoch, raise_seq = excluded.raise_seq,"
    " raise_idx = excluded.raise_idx, clear_epoch = excluded.clear_epoch,"
    " clear_seq = excluded.clear_seq, clear_idx = excluded.clear_idx,"
    " raise_ahead = excluded.raise_ahead, clear_ahead = excluded.clear_ahead"
)
INSERT_META: Final = (
    "INSERT INTO metas (gateway, hash, payload, alg, kid, sig, issued_at, received_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (gateway, hash) DO NOTHING"
)
# The newest description wins, whatever order the messages arrive in, by each meta's ordering
# time: its issued_at, but at most its (first) arrival plus `ingest.ahead_allowance`, read from
# its `metas` row (so a resend ranks as at first arrival). A meta stamped ahead of the
# collector's clock is applied at once, yet ranks as if issued at arrival + allowance: any meta
# issued after that replaces it (collector.storage.ahead). A row whose meta is missing from
# `metas` ranks by its issued_at. Parameters after the row: allowance (x2), gateway and hash of
# the incoming meta, allowance (x2).
_RANKED: Final = (
    "(SELECT CASE WHEN m.issued_at > m.received_at + ? THEN m.received_at + ?"
    " ELSE m.issued_at END FROM metas m WHERE m.gateway = {gateway} AND m.hash = {hash})"
)
UPSERT_POINT_META: Final = (
    "INSERT INTO point_meta (gateway, point, quota, unit, name, device, thresholds,"
    " issued_at, meta_hash, poll) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (gateway, point) DO UPDATE SET quota = excluded.quota,"
    " unit = excluded.unit, name = excluded.name, device = excluded.device,"
    " thresholds = excluded.thresholds, issued_at = excluded.issued_at,"
    " meta_hash = excluded.meta_hash, poll = excluded.poll"
    f" WHERE {_RANKED.format(gateway='?', hash='?')} >= COALESCE("
    + _RANKED.format(gateway="point_meta.gateway", hash="point_meta.meta_hash")
    + ", point_meta.issued_at)"
)
DELETE_SEQUENCE_GAP: Final = (
    "DELETE FROM gaps WHERE gateway = ? AND kind = 'sequence' AND epoch = ?"
    " AND from_seq = ? AND to_seq = ?"
)
INSERT_SEQUENCE_GAP: Final = (
    "INSERT INTO gaps (gateway, epoch, kind, from_seq, to_seq, reason, lost, detected_at)"
    " VALUES (?, ?, 'sequence', ?, ?, 'missing', NULL, ?)"
)
# first_seen is set by the stream's first stored block (0 until then); conflict stays once set
# (SQLite's 0/1 integer, PostgreSQL's boolean: OR is both's); last_seen only grows.
UPSERT_STREAM: Final = (
    "INSERT INTO ingest_state (gateway, epoch, acked_through, max_seq, missing, declared,"
    " conflict, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (gateway, epoch) DO UPDATE SET acked_through = excluded.acked_through,"
    " max_seq = excluded.max_seq, missing = excluded.missing, declared = excluded.declared,"
    " conflict = ingest_state.conflict OR excluded.conflict,"
    " first_seen = CASE WHEN ingest_state.first_seen = 0 THEN excluded.first_seen"
    " ELSE ingest_state.first_seen END,"
    " last_seen = CASE WHEN excluded.last_seen > ingest_state.last_seen"
    " THEN excluded.last_seen ELSE ingest_state.last_seen END"
)
UPSERT_STATUS: Final = (
    "INSERT INTO gateway_status (gateway, online, last_seen) VALUES (?, ?, ?)"
    " ON CONFLICT (gateway) DO UPDATE SET online = excluded.online,"
    " last_seen = excluded.last_seen WHERE excluded.last_seen >= gateway_status.last_seen"
)


def block_rows(blocks: Iterable[IncomingBlock]) -> list[Params]:
    """The `blocks` rows of `blocks` (INSERT_BLOCK).

    `newest_t` is the later of the block's arrival and its newest reading's t: retention keeps
    the block as long as the month of either (`collector.storage.block_retention`).
    """
    return [
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
            max([b.received_at, *(r.t for r in b.entries.readings)]),
        )
        for b in blocks
    ]


def reading_records(blocks: Iterable[IncomingBlock]) -> list[ReadingRecord]:
    """The `readings` rows of `blocks`, in block and record order (READING_FIELDS)."""
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


def latest_rows(blocks: Iterable[IncomingBlock]) -> list[Params]:
    """One `latest` row per point of `blocks`: its newest reading.

    One per point because a statement may not upsert a row twice; the columns are
    (gateway, point, quota, t, value, unit, quality, flags).
    """
    return [
        (gateway, r.point, r.quota, r.t, r.value, r.unit, r.quality, flags_text(r.flags))
        for gateway, r in newest_readings(blocks)
    ]


def record_gap_rows(blocks: Iterable[IncomingBlock]) -> list[Params]:
    """The `gaps` rows the blocks' gap records declare (INSERT_RECORD_GAP)."""
    return [
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


def alarm_rows(alarms: Iterable[AlarmState]) -> list[Params]:
    """The `alarms` rows of `alarms` (UPSERT_ALARM)."""
    return [
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
            a.raised_ahead,
            a.cleared_ahead,
        )
        for a in alarms
    ]


def meta_rows(metas: Iterable[IncomingMeta]) -> list[Params]:
    """The `metas` rows of `metas` (INSERT_META)."""
    return [
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
    ]


def point_meta_rows(metas: Iterable[IncomingMeta], allowance: float) -> list[Params]:
    """The `point_meta` rows the metas describe (UPSERT_POINT_META), ranked by `allowance`."""
    rows: list[Params] = []
    for m in metas:
        digest = block_hash(m.payload)  # once per meta: it hashes the whole catalogue
        rows.extend(
            (
                m.meta.gateway,
                p.point,
                p.quota,
                p.unit,
                p.name,
                p.device,
                json.dumps(dict(sorted(p.thresholds.items()))),
                m.issued_at,
                digest,
                p.poll,
                allowance,
                allowance,
                m.meta.gateway,
                digest,
                allowance,
                allowance,
            )
            for p in m.points
        )
    return rows


def stream_rows(
    after: dict[Stream, StreamState], changes: dict[Stream, StreamChange]
) -> list[Params]:
    """The `ingest_state` rows of the advanced streams (UPSERT_STREAM).

    Columns (gateway, epoch, acked_through, max_seq, missing, declared, conflict, first_seen,
    last_seen); first_seen counts only for a stream's first row.
    """
    return [
        (
            *stream,
            state.acked_through,
            state.max_seq,
            json_ranges(state.missing),
            json_ranges(state.declared),
            state.conflict,
            changes[stream].seen,
            changes[stream].seen,
        )
        for stream, state in after.items()
    ]


def status_rows(statuses: Iterable[StatusUpdate]) -> list[Params]:
    """The `gateway_status` rows of `statuses` (UPSERT_STATUS)."""
    return [(s.gateway, s.online, s.at) for s in statuses]
