"""One ingest batch on any backend: the order of its steps, once.

SQLite and PostgreSQL make the same lookups and the same pure decisions
(`collector.storage.core`) in the same order inside one write transaction. A backend is a
`BatchSteps`: its lookups (SQLite by chunks of `VALUES`, PostgreSQL by `unnest` arrays), the
statements whose SQL differs (`latest`, rollups), the shared statements of
`collector.storage.ingest_rows` run with its driver, and how the batch ends: SQLite inserts
its readings then journals; PostgreSQL takes the feed lock, COPYs its readings, journals and
notifies (`collector.storage.postgres.feed`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from collector.audit.chain import ActionEntry
from collector.feed.core import (
    JournalEntry,
    alarm_entry,
    gap_record_entries,
    hole_entries,
    status_entries,
)
from collector.model import (
    AuditEntry,
    BatchResult,
    IncomingBlock,
    IncomingMeta,
    IngestBatch,
    LiveKey,
    Outcome,
    StreamState,
)
from collector.readmodel import AlarmState
from collector.storage.ahead import MetaKey, meta_is_ahead, metas_ahead, split_ahead
from collector.storage.alarms import AlarmKey, alarm_key, merge_alarms
from collector.storage.core import (
    BlockKey,
    Link,
    Stream,
    block_key,
    chain_breaks,
    classify,
    dedupe_audits,
    hole_changes,
    neighbours,
    progress,
    pruned_keys,
    stream_changes,
)
from collector.storage.gap_records import GapIdentity, GapKey, gap_keys, unique_gaps
from collector.storage.ingest_rows import (
    DELETE_SEQUENCE_GAP,
    INSERT_BLOCK,
    INSERT_META,
    INSERT_RECORD_GAP,
    INSERT_SEQUENCE_GAP,
    UPSERT_ALARM,
    UPSERT_POINT_META,
    UPSERT_STATUS,
    UPSERT_STREAM,
    Params,
    Series,
    alarm_rows,
    block_rows,
    latest_rows,
    meta_rows,
    point_meta_rows,
    record_gap_rows,
    status_rows,
    stream_rows,
)
from collector.storage.readings import (
    ReadingKey,
    ReadingValue,
    keys_to_look_up,
    reading_keys,
    unique_readings,
    within_retention,
)
from collector.storage.rollups import MinuteRollup, minute_rollups
from specs.block import block_hash


class BatchSteps(Protocol):
    """What a backend does for `store_batch`, inside the transaction its caller opened."""

    async def run(self, statement: str, rows: Sequence[Params]) -> None:
        """Execute one of `ingest_rows`' statements for each of `rows` (not called empty)."""

    async def stored_links(self, keys: Collection[BlockKey]) -> dict[BlockKey, Link]:
        """(hash, prev) of the stored blocks among `keys`."""

    async def newest_times(self, series: Collection[Series], cutoff: float) -> dict[Series, float]:
        """The newest stored t not later than `cutoff` of each (gateway, point) that has one."""

    async def stored_readings(self, keys: Sequence[ReadingKey]) -> dict[ReadingKey, ReadingValue]:
        """(value, unit, quality) of the stored readings among `keys`."""

    async def raw_kept_from(self) -> float | None:
        """Where retention's deletion of raw readings ended (None: it deleted none)."""

    async def stored_alarms(self, keys: Sequence[AlarmKey]) -> dict[AlarmKey, AlarmState]:
        """The stored alarms among `keys`."""

    async def stored_gaps(self, keys: Collection[GapKey]) -> set[GapIdentity]:
        """The identities of the stored gap records of each (gateway, t) among `keys`."""

    async def stored_metas(self, keys: Collection[MetaKey]) -> set[MetaKey]:
        """The (gateway, hash) of the stored metas among `keys`."""

    async def stream_states(self, streams: Collection[Stream]) -> dict[Stream, StreamState]:
        """The stored progress of `streams` (those with a row), with the hash at acked_through."""

    async def upsert_latest(self, rows: Sequence[Params], cutoff: float) -> None:
        """Keep each point's newest reading (`latest_rows`; a resent old one never wins).

        Any replaces a held one later than `cutoff`: stored ahead of the collector's clock by
        an earlier version (collector.storage.ahead), it would otherwise stay for good.
        """

    async def fold_rollups(self, rollups: Sequence[MinuteRollup]) -> None:
        """Merge a batch's per-minute rollups into the held ones."""

    async def adopt_keys(
        self, blocks: Sequence[IncomingBlock], overlap: float
    ) -> Sequence[AuditEntry]:
        """Keep the keys the newly stored `blocks` announce; the refusals to audit."""

    async def live_keys(self, gateways: Collection[str]) -> dict[str, tuple[LiveKey, ...]]:
        """The keys of each of `gateways` that are not revoked."""

    async def held_statuses(self, gateways: Collection[str]) -> dict[str, tuple[bool, float]]:
        """The stored (online, last_seen) of each of `gateways` that has a status."""

    async def record_presence(self, batch: IngestBatch) -> None:
        """Extend or open each gateway's presence interval by the batch."""

    async def append_audits(
        self, audits: Sequence[AuditEntry], actions: Sequence[ActionEntry], now: float
    ) -> None:
        """Aggregate rejections and actions into the audit chain, sealing what `now` closes."""

    async def finish(self, new: Sequence[IncomingBlock], entries: Sequence[JournalEntry]) -> None:
        """Store the readings of `new` (`reading_records`), then journal `entries` after them."""


async def store_batch(steps: BatchSteps, batch: IngestBatch) -> BatchResult:
    """Store blocks once, audit rejections, apply statuses and metas: the whole batch."""
    # The batch's keys and their neighbours: to classify, and to check the chain.
    links = await steps.stored_links(neighbours(block_key(b) for b in batch.blocks))
    # Their streams: a seq whose block retention deleted is a duplicate all the same.
    read = {b.stream for b in batch.blocks}
    known = await steps.stream_states(read)
    pruned = pruned_keys(batch.blocks, links, known)
    outcomes = classify(batch.blocks, {key: link[0] for key, link in links.items()}, pruned)
    fresh = [b for b, o in zip(batch.blocks, outcomes, strict=True) if o is Outcome.STORED]
    breaks = chain_breaks(fresh, links)
    keys = reading_keys(fresh)
    # A reading stamped past the collector's clock is no series' newest (collector.storage.ahead).
    cutoff = max((b.received_at for b in fresh), default=0.0) + batch.ahead_allowance
    newest = await steps.newest_times({key[:2] for key in keys}, cutoff)
    held = await steps.stored_readings(keys_to_look_up(keys, newest, cutoff))
    new, repeated = unique_readings(fresh, held, keys)
    counted = {block_key(b): len(b.entries.readings) for b in new}
    # Read after the readings: retention moves the mark before it deletes, so a reading it
    # deleted since the lookup above is before the mark read here (PostgreSQL's READ COMMITTED).
    new, expired = within_retention(new, await steps.raw_kept_from())
    left_out = _left_out(batch.blocks, outcomes, counted, new) if expired else ()
    # Stored as sent and flagged, but no current value: kept out of `latest` and the rollups.
    ahead = split_ahead(new, batch.ahead_allowance)
    new = ahead.stored
    # A gap record sealed again in another block (collector.storage.gap_records) is kept once.
    held_gaps = await steps.stored_gaps(gaps) if (gaps := gap_keys(new)) else set()
    new, repeated_gaps = unique_gaps(new, held_gaps)
    await _insert_blocks(steps, new, ahead.current, cutoff)
    await steps.fold_rollups(minute_rollups(ahead.current))
    alarms = await _pair_alarms(steps, new, batch.ahead_allowance)
    refused_keys = await steps.adopt_keys(new, batch.key_overlap)
    audits = [
        *batch.audits,
        *(rejected for b in new for rejected in b.entries.rejected),
        *refused_keys,
        *dedupe_audits(batch.blocks, outcomes, pruned),
        *repeated,
        *repeated_gaps,
        *expired,
        *ahead.audits,
        *metas_ahead(batch.metas, batch.ahead_allowance, await _stored_metas(steps, batch)),
        *(found.audit for found in breaks),
    ]
    broken = {found.stream for found in breaks}
    before, streams = await _advance_streams(steps, batch.blocks, outcomes, broken, known=known)
    # After adopt_keys and the streams: an ACK that covers an announcement names its key
    # exactly when the registry took it (several collectors: the gateway's lock is held).
    live = await steps.live_keys({b.block.header.gateway for b in batch.blocks})
    statuses_held = await steps.held_statuses({s.gateway for s in batch.statuses})
    await _run(steps, UPSERT_STATUS, status_rows(batch.statuses))
    await _store_metas(steps, batch.metas, batch.ahead_allowance)
    await steps.record_presence(batch)
    if audits or batch.actions:
        # The batch's command results (`up/cmd`) are rows of their own, chained at once; rows
        # whose minute is over by the newest rejection's time are sealed.
        now = max([*(a.at for a in audits), *(a.at for a in batch.actions)])
        await steps.append_audits(audits, batch.actions, now)
    # The live feed, after everything else: its entries follow the readings they report.
    seen = max((b.received_at for b in batch.blocks), default=0.0)
    entries = [
        *gap_record_entries(new),
        *hole_entries(before, streams, seen),
        *(alarm_entry(state, seen, batch.ahead_allowance) for state in alarms.values()),
        *status_entries(statuses_held, batch.statuses),
    ]
    await steps.finish(new, entries)
    found_ahead = dict(zip(map(block_key, new), ahead.counts, strict=True))
    return BatchResult(
        outcomes, streams, live, left_out, _per_block(batch.blocks, outcomes, found_ahead)
    )


def _left_out(
    blocks: Sequence[IncomingBlock],
    outcomes: Sequence[Outcome],
    counted: Mapping[BlockKey, int],
    kept: Sequence[IncomingBlock],
) -> tuple[int, ...]:
    """Per block of the batch, its readings `within_retention` left out (`counted` before)."""
    after = {block_key(b): len(b.entries.readings) for b in kept}
    return tuple(
        counted.get(key, 0) - after.get(key, 0) if outcome is Outcome.STORED else 0
        for key, outcome in zip(map(block_key, blocks), outcomes, strict=True)
    )


def _per_block(
    blocks: Sequence[IncomingBlock], outcomes: Sequence[Outcome], found: Mapping[BlockKey, int]
) -> tuple[int, ...]:
    """Per block of the batch, its count in `found` if it was stored now (empty: all zero)."""
    if not any(found.values()):
        return ()
    return tuple(
        found.get(key, 0) if outcome is Outcome.STORED else 0
        for key, outcome in zip(map(block_key, blocks), outcomes, strict=True)
    )


async def _run(steps: BatchSteps, statement: str, rows: Sequence[Params]) -> None:
    if rows:
        await steps.run(statement, rows)


async def _insert_blocks(
    steps: BatchSteps,
    blocks: Sequence[IncomingBlock],
    current: Sequence[IncomingBlock],
    cutoff: float,
) -> None:
    """The blocks, each point's newest `current` reading and the record gaps.

    The readings are stored by `finish`.
    """
    await _run(steps, INSERT_BLOCK, block_rows(blocks))
    latest = latest_rows(current)
    if latest:
        await steps.upsert_latest(latest, cutoff)
    await _run(steps, INSERT_RECORD_GAP, record_gap_rows(blocks))


async def _pair_alarms(
    steps: BatchSteps, blocks: Sequence[IncomingBlock], allowance: float
) -> dict[AlarmKey, AlarmState]:
    """Merge the blocks' alarm events into the stored alarms; the states written.

    An event stamped past `allowance` is merged marked (collector.storage.alarms).
    """
    keys = [alarm_key(b.block.header.gateway, event) for b in blocks for event in b.entries.alarms]
    if not keys:
        return {}
    merged = merge_alarms(await steps.stored_alarms(keys), blocks, allowance)
    await _run(steps, UPSERT_ALARM, alarm_rows(merged.values()))
    return merged


async def _stored_metas(steps: BatchSteps, batch: IngestBatch) -> set[MetaKey]:
    """Which of the batch's metas ahead of the clock are stored already (audited no more).

    The others are not looked up: nothing is audited of them.
    """
    allowance = batch.ahead_allowance
    keys = {
        (m.meta.gateway, block_hash(m.payload)) for m in batch.metas if meta_is_ahead(m, allowance)
    }
    return await steps.stored_metas(keys) if keys else set()


async def _store_metas(steps: BatchSteps, metas: Sequence[IncomingMeta], allowance: float) -> None:
    """The signed metas as sent, and what they describe (ranked by ingest_rows' rule)."""
    await _run(steps, INSERT_META, meta_rows(metas))
    await _run(steps, UPSERT_POINT_META, point_meta_rows(metas, allowance))


async def _advance_streams(
    steps: BatchSteps,
    blocks: Sequence[IncomingBlock],
    outcomes: Sequence[Outcome],
    broken: Collection[Stream],
    *,
    known: Mapping[Stream, StreamState],
) -> tuple[dict[Stream, StreamState], dict[Stream, StreamState]]:
    """Advance the batch's streams; their states (of those that had one) before and after.

    The states of the blocks' own streams were read already: `known` (those that have one).
    """
    changes = stream_changes(blocks, outcomes, broken)
    before = {stream: known[stream] for stream in changes if stream in known}
    read = {b.stream for b in blocks}
    unread = [stream for stream in changes if stream not in read]
    if unread:
        before |= await steps.stream_states(unread)
    after = {
        stream: progress(before.get(stream, StreamState(*stream)), change)
        for stream, change in changes.items()
    }
    # The batch's blocks are inserted already: the hash at acked_through is in the table.
    acked = [(*stream, s.acked_through) for stream, s in after.items() if s.acked_through]
    hashes = await steps.stored_links(acked)
    for stream, state in after.items():
        link = hashes.get((*stream, state.acked_through))
        after[stream] = replace(state, acked_hash=None if link is None else link[0])
    if not after:
        return before, after
    await _run(steps, UPSERT_STREAM, stream_rows(after, changes))
    # Only the holes that changed are rewritten: the others keep their rows, and so their
    # place in the pages of GET /v1/gaps, and a batch that fills one of 5,000 holes writes one.
    gone, opened = hole_changes(before, after)
    await _run(steps, DELETE_SEQUENCE_GAP, gone)
    batch_seen = max((b.received_at for b in blocks), default=0.0)
    holes = [(*hole, changes[hole[:2]].seen or batch_seen) for hole in opened]
    await _run(steps, INSERT_SEQUENCE_GAP, holes)
    return before, after
