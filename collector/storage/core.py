"""Pure decisions every storage implementation makes inside its ingest transaction.

Idempotency is by set membership of (gateway, epoch, seq), never by a high-water mark: MQTT
redelivery can yield 1,2,3,2,3,4. Sequence progress is tracked incrementally: each new seq
either extends the stream (possibly opening a hole) or fills part of a hole, so no step ever
rescans the stored blocks. Alarms pair the same way: each raise or clear event merges into the
stored state of its (gateway, alarm_id), whatever order the blocks arrive in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from collector.storage.base import AlarmEntry, AlarmState, IncomingBlock, Outcome, StreamState
from specs.records import AlarmEvent

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


def _remove(missing: list[tuple[int, int]], seq: int) -> list[tuple[int, int]]:
    """Take `seq` out of the hole that holds it (the caller knows one does)."""
    result: list[tuple[int, int]] = []
    for low, high in missing:
        if low <= seq <= high:
            if low < seq:
                result.append((low, seq - 1))
            if seq < high:
                result.append((seq + 1, high))
        else:
            result.append((low, high))
    return result


def advance(state: StreamState, new_seqs: Iterable[int]) -> StreamState:
    """The stream's progress after storing `new_seqs` (seqs not stored before).

    A seq that is neither above max_seq nor inside a hole was stored already; it is ignored,
    so calling this with a seq twice is harmless.
    """
    max_seq = state.max_seq
    missing = list(state.missing)
    for seq in sorted(set(new_seqs)):
        if seq > max_seq:
            if seq > max_seq + 1:
                missing.append((max_seq + 1, seq - 1))
            max_seq = seq
        elif any(low <= seq <= high for low, high in missing):
            missing = _remove(missing, seq)
    acked_through = missing[0][0] - 1 if missing else max_seq
    return StreamState(
        gateway=state.gateway,
        epoch=state.epoch,
        acked_through=acked_through,
        max_seq=max_seq,
        missing=tuple(missing),
    )


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
