"""Pure decisions every storage implementation makes inside its ingest transaction.

Idempotency is by set membership of (gateway, epoch, seq), never by a high-water mark: MQTT
redelivery can yield 1,2,3,2,3,4. Sequence progress is tracked incrementally: each new seq
either extends the stream (possibly opening a hole) or fills part of a hole, so no step ever
rescans the stored blocks. Alarms pair the same way: each raise or clear event merges into the
stored state of its (gateway, alarm_id), whatever order the blocks arrive in. Readings are
unique per (gateway, point, t): the first stored wins, later ones are audited, not stored.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from collector.model import (
    MAX_DETAIL,
    AlarmEntry,
    AuditEntry,
    IncomingBlock,
    Outcome,
    ReadingEntry,
    Reason,
    StreamState,
)
from collector.readmodel import AlarmState
from specs.block import MAX_SEQ
from specs.records import AlarmEvent, iso_time

BlockKey = tuple[str, str, int]


def block_key(incoming: IncomingBlock) -> BlockKey:
    """The idempotency key of a block: (gateway, epoch, seq)."""
    header = incoming.block.header
    return (header.gateway, header.epoch, header.seq)


def classify(
    blocks: Sequence[IncomingBlock], stored: Mapping[BlockKey, str]
) -> tuple[Outcome, ...]:
    """Decide per block: new, an exact duplicate, or the same key with other bytes.

    `stored` maps keys already in the database to their payload hashes. Blocks earlier in the
    same batch count as stored for the blocks after them.
    """
    known = dict(stored)
    outcomes: list[Outcome] = []
    for incoming in blocks:
        key = block_key(incoming)
        digest = incoming.block.digest
        held = known.get(key)
        if held is None:
            known[key] = digest
            outcomes.append(Outcome.STORED)
        elif held == digest:
            outcomes.append(Outcome.DUPLICATE)
        else:
            outcomes.append(Outcome.SEQ_CONFLICT)
    return tuple(outcomes)


Span = tuple[int, int | None]
"""A declared seq range (from_seq, to_seq); to_seq None: every seq from from_seq on."""


def _union(spans: Iterable[Span]) -> list[Span]:
    """Sorted, disjoint spans covering the same seqs (adjacent spans joined)."""
    merged: list[Span] = []
    for low, high in sorted(spans, key=lambda span: span[0]):
        if merged:
            last_low, last_high = merged[-1]
            if last_high is None:
                break  # open-ended: covers everything after it
            if low <= last_high + 1:
                top = None if high is None else max(high, last_high)
                merged[-1] = (last_low, top)
                continue
        merged.append((low, high))
    return merged


def merge_declared(spans: Iterable[Span]) -> tuple[Span, ...]:
    """Declared ranges as a stream keeps them: sorted, disjoint and merged."""
    return tuple(_union(spans))


def _minus(holes: Sequence[tuple[int, int]], closed: Sequence[Span]) -> list[tuple[int, int]]:
    """`holes` without the seqs of `closed`; both sorted and disjoint (one sweep)."""
    result: list[tuple[int, int]] = []
    index = 0
    for low, high in holes:
        start = low
        # Spans wholly below this hole are below every later hole too.
        while index < len(closed) and _end(closed[index]) < start and closed[index][1] is not None:
            index += 1
        scan = index
        while start <= high:
            if scan == len(closed) or closed[scan][0] > high:
                result.append((start, high))
                break
            cut_low, cut_high = closed[scan]
            if cut_low > start:
                result.append((start, cut_low - 1))
            if cut_high is None:
                break
            start = max(start, cut_high + 1)
            scan += 1
    return result


def _end(span: Span) -> int:
    """The highest seq a declaration says existed (the seq before an open-ended range)."""
    low, high = span
    return low - 1 if high is None else high


def advance(
    state: StreamState, new_seqs: Iterable[int], declared: Iterable[Span] = ()
) -> StreamState:
    """The stream's progress after storing `new_seqs` and recording `declared` ranges.

    Seqs already stored, and ranges already declared, change nothing, so calling this twice
    with the same input is harmless. The result depends only on the sets of stored seqs and
    declared ranges so far, never on the order they arrived in: everything in 1..max_seq that
    is neither stored nor declared is missing, and a declared seq never is, whenever it came.
    """
    seqs = sorted(set(new_seqs))
    fresh = tuple(declared)
    spans = _union((*state.declared, *fresh))
    # Ends of the declarations as sent: merged, (1, None) and (2, None) would forget that the
    # second says seq 1 exists. Earlier declarations are in max_seq already.
    top = max(state.max_seq, seqs[-1] if seqs else 0, *(_end(span) for span in fresh))
    holes = list(state.missing)
    if top > state.max_seq:
        holes.append((state.max_seq + 1, top))  # seqs seen for the first time: all unknown
    closed = _union((*((seq, seq) for seq in seqs), *spans))
    missing = _minus(holes, closed)
    acked_through = missing[0][0] - 1 if missing else top
    return replace(
        state,
        acked_through=acked_through,
        max_seq=top,
        missing=tuple(missing),
        declared=tuple(spans),
        # The storage looks up the hash at a new acked_through; until then it is unknown.
        acked_hash=state.acked_hash if acked_through == state.acked_through else None,
    )


@dataclass(frozen=True, slots=True)
class StreamChange:
    """What one batch does to one (gateway, epoch) stream.

    `seqs`: its blocks stored now; `declared`: the seq ranges of it that stored gap records
    (of any epoch's blocks) declare lost; `seen`: when its newest block of the batch arrived,
    0.0 when none did (a stream known only from another epoch's gap record, or only from a
    conflicting block); `conflict`: a seq conflict or chain break was found in it now.
    """

    seqs: tuple[int, ...] = ()
    declared: tuple[Span, ...] = ()
    seen: float = 0.0
    conflict: bool = False


Stream = tuple[str, str]


def stream_changes(
    blocks: Sequence[IncomingBlock],
    outcomes: Sequence[Outcome],
    broken: Collection[Stream] = (),
) -> dict[Stream, StreamChange]:
    """Per stream the batch touches: the seqs it stores, the ranges declared lost, conflicts.

    A duplicate touches its stream (the agent gets a fresh ACK) but brings nothing new; a gap
    record counts only from the block's first storage, like the rest of its content. A seq
    conflict, and every stream in `broken` (chain breaks), flags its stream.
    """
    changes: dict[Stream, StreamChange] = {stream: StreamChange(conflict=True) for stream in broken}
    for incoming, outcome in zip(blocks, outcomes, strict=True):
        if not outcome.acknowledged:
            held = changes.get(incoming.stream, StreamChange())
            changes[incoming.stream] = replace(held, conflict=True)
            continue
        header = incoming.block.header
        held = changes.get(incoming.stream, StreamChange())
        seqs = (*held.seqs, header.seq) if outcome is Outcome.STORED else held.seqs
        changes[incoming.stream] = replace(
            held, seqs=seqs, seen=max(held.seen, incoming.received_at)
        )
        if outcome is not Outcome.STORED:
            continue
        for gap in incoming.entries.gaps:
            if gap.epoch is None or gap.from_seq is None:
                continue
            target = (header.gateway, gap.epoch)
            other = changes.get(target, StreamChange())
            changes[target] = replace(other, declared=(*other.declared, (gap.from_seq, gap.to_seq)))
    return changes


ReadingKey = tuple[str, str, float]
"""A reading's identity: (gateway, point, t). The collector stores at most one per key."""
ReadingValue = tuple[float | None, str, str]
"""What makes two readings of one key the same: (value, unit, quality)."""
AUDIT_SAMPLE: Final = 3
"""How many (point, t) an aggregated audit row names."""


def reading_keys(blocks: Iterable[IncomingBlock]) -> list[ReadingKey]:
    """The (gateway, point, t) of every reading the blocks would store."""
    return [
        (incoming.block.header.gateway, reading.point, reading.t)
        for incoming in blocks
        for reading in incoming.entries.readings
    ]


def keys_to_look_up(
    keys: Iterable[ReadingKey], newest: Mapping[tuple[str, str], float]
) -> list[ReadingKey]:
    """The keys that may be stored already: not later than their series' newest stored t.

    Live readings are newer than everything stored, so a batch of them needs one lookup
    per series (`newest`), not one per reading.
    """
    return [key for key in keys if (limit := newest.get(key[:2])) is not None and key[2] <= limit]


def _reading_audit(
    incoming: IncomingBlock, reason: Reason, repeats: Sequence[ReadingEntry]
) -> AuditEntry:
    header = incoming.block.header
    what = (
        "the same value, unit and quality"
        if reason is Reason.DUPLICATE
        else "another value, unit or quality"
    )
    first = ", ".join(f"{r.point}@{iso_time(r.t)}" for r in repeats[:AUDIT_SAMPLE])
    more = ", ..." if len(repeats) > AUDIT_SAMPLE else ""
    detail = (
        f"gateway {header.gateway} epoch {header.epoch} seq {header.seq}: {len(repeats)}"
        f" reading(s) of a (point, t) stored already, with {what}; the first one is kept,"
        f" these are not stored: {first}{more}"
    )
    return AuditEntry(
        at=incoming.received_at,
        gateway=header.gateway,
        topic=incoming.topic,
        reason=reason,
        detail=detail[:MAX_DETAIL],
        payload_hash=incoming.block.digest,
    )


def unique_readings(
    blocks: Sequence[IncomingBlock],
    stored: Mapping[ReadingKey, ReadingValue],
    keys: Sequence[ReadingKey] | None = None,
) -> tuple[tuple[IncomingBlock, ...], tuple[AuditEntry, ...]]:
    """The blocks with only readings of a new (gateway, point, t), and what was left out.

    `stored` holds the keys among the blocks' readings that the database has already, with
    their values. The first reading of a key is kept (stored before, or earlier in `blocks`,
    whatever their epochs); a later one is left out and audited, `duplicate` when value, unit
    and quality are equal and `conflict` when not: one row per block and reason, with a count
    and the first few (point, t), so that a resealed backlog cannot flood the audit table.
    `keys` are the blocks' `reading_keys`, when the caller has them already.
    """
    if keys is None:
        keys = reading_keys(blocks)
    if not stored and len(set(keys)) == len(keys):
        # The live case: nothing stored and no key twice in the batch, so nothing to drop.
        return tuple(blocks), ()
    known = dict(stored)
    kept_blocks: list[IncomingBlock] = []
    audits: list[AuditEntry] = []
    for incoming in blocks:
        gateway = incoming.block.header.gateway
        kept: list[ReadingEntry] = []
        repeats: dict[Reason, list[ReadingEntry]] = {Reason.DUPLICATE: [], Reason.CONFLICT: []}
        for reading in incoming.entries.readings:
            key = (gateway, reading.point, reading.t)
            value = (reading.value, reading.unit, reading.quality)
            held = known.get(key)
            if held is None:
                known[key] = value
                kept.append(reading)
            else:
                repeats[Reason.DUPLICATE if held == value else Reason.CONFLICT].append(reading)
        if len(kept) == len(incoming.entries.readings):
            kept_blocks.append(incoming)
            continue
        entries = replace(incoming.entries, readings=tuple(kept))
        kept_blocks.append(replace(incoming, entries=entries))
        audits.extend(
            _reading_audit(incoming, reason, found) for reason, found in repeats.items() if found
        )
    return tuple(kept_blocks), tuple(audits)


def progress(state: StreamState, change: StreamChange) -> StreamState:
    """The stream after one batch: advanced by its seqs and declarations, conflict for good."""
    advanced = advance(state, change.seqs, change.declared)
    return replace(advanced, conflict=state.conflict or change.conflict)


Link = tuple[str, str]
"""What chains a stored block: (its hash, its prev)."""


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """A newly stored block that does not chain onto a stored neighbour, with its audit row."""

    stream: Stream
    audit: AuditEntry


def chain_breaks(
    blocks: Sequence[IncomingBlock], stored: Mapping[BlockKey, Link]
) -> tuple[ChainBreak, ...]:
    """Links between the newly stored `blocks` and stored blocks that do not hold.

    Block s chains onto s - 1 when its `prev` is the hash of s - 1. Each link with a new block
    at either end is checked once, when both ends are stored: `stored` holds the (hash, prev)
    of the stored neighbours (s - 1, s + 1) of `blocks`.
    """
    new = {block_key(incoming): incoming for incoming in blocks}
    links = dict(stored)
    links.update((key, (b.block.digest, b.block.header.prev)) for key, b in new.items())
    breaks: list[ChainBreak] = []
    for (gateway, epoch, seq), incoming in new.items():
        below = links.get((gateway, epoch, seq - 1))
        if below is not None and incoming.block.header.prev != below[0]:
            breaks.append(
                _chain_break(incoming, seq - 1, below[0], seq, incoming.block.header.prev)
            )
        above_key = (gateway, epoch, seq + 1)
        above = links.get(above_key)
        if above is not None and above_key not in new and above[1] != incoming.block.digest:
            breaks.append(_chain_break(incoming, seq, incoming.block.digest, seq + 1, above[1]))
    return tuple(breaks)


def _chain_break(
    incoming: IncomingBlock, low: int, low_hash: str, high: int, high_prev: str
) -> ChainBreak:
    header = incoming.block.header
    detail = (
        f"gateway {header.gateway} epoch {header.epoch}: seq {high} has prev {high_prev},"
        f" not the hash {low_hash} of the stored seq {low} (found storing seq {header.seq})"
    )
    audit = AuditEntry(
        at=incoming.received_at,
        gateway=header.gateway,
        topic=incoming.topic,
        reason=Reason.CHAIN_BREAK,
        detail=detail[:MAX_DETAIL],
        payload_hash=incoming.block.digest,
    )
    return ChainBreak(incoming.stream, audit)


AlarmKey = tuple[str, str]


def alarm_key(gateway: str, alarm: AlarmEntry) -> AlarmKey:
    """The identity of an alarm: (gateway, alarm_id)."""
    return (gateway, alarm.alarm_id)


def _earlier(held: float | None, new: float) -> bool:
    return held is None or new < held


def merge_alarm(
    held: AlarmState | None, gateway: str, source: tuple[str, int], event: AlarmEntry
) -> AlarmState:
    """The alarm after one more raise or clear event; order-independent.

    Blocks arrive out of order, so a clear may come before its raise: each event fills its own
    half, and the raise's description wins whenever it is known. A repeated event (a resent
    block cannot repeat one, but an agent may re-state an alarm) keeps the earliest time, so
    merging the same events in any order gives the same state. `source` is the block's
    (epoch, seq).
    """
    where = (source[0], source[1], event.idx)
    if event.event is AlarmEvent.RAISE:
        if held is not None and not _earlier(held.raised_at, event.t):
            return held
        return AlarmState(
            gateway=gateway,
            alarm_id=event.alarm_id,
            point=event.point,
            quota=event.quota,
            level=event.level,
            raised_at=event.t,
            cleared_at=None if held is None else held.cleared_at,
            value=event.value,
            threshold=event.threshold,
            unit=event.unit,
            trigger_t=event.trigger_t,
            related=event.related,
            detail=event.detail,
            raised_in=where,
            cleared_in=None if held is None else held.cleared_in,
        )
    if held is None:
        return AlarmState(
            gateway=gateway,
            alarm_id=event.alarm_id,
            point=event.point,
            quota=event.quota,
            level=event.level,
            raised_at=None,
            cleared_at=event.t,
            value=event.value,
            threshold=event.threshold,
            unit=event.unit,
            trigger_t=event.trigger_t,
            related=event.related,
            detail=event.detail,
            cleared_in=where,
        )
    if not _earlier(held.cleared_at, event.t):
        return held
    if held.raised_at is None:
        # Still only clears: the earliest clear describes the alarm until its raise arrives.
        return merge_alarm(None, gateway, source, event)
    return replace(held, cleared_at=event.t, cleared_in=where)


def merge_alarms(
    held: Mapping[AlarmKey, AlarmState], blocks: Iterable[IncomingBlock]
) -> dict[AlarmKey, AlarmState]:
    """The alarms the events of `blocks` touch, after merging them into what is stored."""
    merged: dict[AlarmKey, AlarmState] = {}
    for incoming in blocks:
        header = incoming.block.header
        for event in incoming.entries.alarms:
            key = alarm_key(header.gateway, event)
            before = merged.get(key, held.get(key))
            merged[key] = merge_alarm(before, header.gateway, (header.epoch, header.seq), event)
    return merged


def neighbours(keys: Iterable[BlockKey]) -> set[BlockKey]:
    """Each key with the seqs before and after it."""
    return {
        (gateway, epoch, seq + step)
        for gateway, epoch, seq in keys
        for step in (-1, 0, 1)
        if 1 <= seq + step <= MAX_SEQ
    }


def dedupe_audits(blocks: Sequence[IncomingBlock], outcomes: Sequence[Outcome]) -> list[AuditEntry]:
    """One DUPLICATE or SEQ_CONFLICT audit row per block the batch did not store."""
    entries: list[AuditEntry] = []
    for incoming, outcome in zip(blocks, outcomes, strict=True):
        header = incoming.block.header
        where = f"gateway {header.gateway} epoch {header.epoch} seq {header.seq}"
        if outcome is Outcome.DUPLICATE:
            reason, detail = Reason.DUPLICATE, f"{where} is stored already with the same bytes"
        elif outcome is Outcome.SEQ_CONFLICT:
            reason, detail = Reason.SEQ_CONFLICT, f"{where} is stored already with other bytes"
        else:
            continue
        entries.append(
            AuditEntry(
                at=incoming.received_at,
                gateway=header.gateway,
                topic=incoming.topic,
                reason=reason,
                detail=detail,
                payload_hash=incoming.block.digest,
            )
        )
    return entries


@functools.lru_cache(maxsize=256)
def flags_text(flags: tuple[str, ...]) -> str:
    """A reading's flags as the stored JSON list; a handful of distinct tuples recur, so cached."""
    return json.dumps(list(flags))


def newest_readings(blocks: Iterable[IncomingBlock]) -> list[tuple[str, ReadingEntry]]:
    """The newest reading of each (gateway, point) among `blocks`, for the `latest` table.

    One upsert per point instead of one per reading; a later reading wins a tie, as the
    row-by-row upsert (`excluded.t >= latest.t`) would have it.
    """
    newest: dict[tuple[str, str], ReadingEntry] = {}
    for incoming in blocks:
        gateway = incoming.block.header.gateway
        for reading in incoming.entries.readings:
            held = newest.get((gateway, reading.point))
            if held is None or reading.t >= held.t:
                newest[(gateway, reading.point)] = reading
    return [(gateway, reading) for (gateway, _), reading in newest.items()]
