"""Pure decisions every storage implementation makes inside its ingest transaction.

Idempotency is by set membership of (gateway, epoch, seq), never by a high-water mark: MQTT
redelivery can yield 1,2,3,2,3,4. Sequence progress is tracked incrementally: each new seq
either extends the stream (possibly opening a hole) or fills part of a hole, so no step ever
rescans the stored blocks. Alarms pair the same way: each raise or clear event merges into the
stored state of its (gateway, alarm_id), whatever order the blocks arrive in
(`collector.storage.alarms`). Readings are unique per (gateway, point, t): the first stored
wins, later ones are audited, not stored (`collector.storage.readings`).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from collector.model import (
    AuditEntry,
    IncomingBlock,
    Outcome,
    Reason,
    StreamState,
)
from specs.block import MAX_SEQ

BlockKey = tuple[str, str, int]


def block_key(incoming: IncomingBlock) -> BlockKey:
    """The idempotency key of a block: (gateway, epoch, seq)."""
    header = incoming.block.header
    return (header.gateway, header.epoch, header.seq)


def classify(
    blocks: Sequence[IncomingBlock],
    stored: Mapping[BlockKey, str],
    pruned: Collection[BlockKey] = frozenset(),
) -> tuple[Outcome, ...]:
    """Decide per block: new, an exact duplicate, or the same key with other bytes.

    `stored` maps keys already in the database to their payload hashes; `pruned` holds keys
    whose stored block retention deleted (`pruned_keys`): a duplicate, whose bytes can no
    longer be compared. Blocks earlier in the same batch count as stored for the blocks after
    them.
    """
    known = dict(stored)
    outcomes: list[Outcome] = []
    for incoming in blocks:
        key = block_key(incoming)
        digest = incoming.block.digest
        held = known.get(key)
        if held is None:
            known[key] = digest
            outcomes.append(Outcome.DUPLICATE if key in pruned else Outcome.STORED)
        elif held == digest:
            outcomes.append(Outcome.DUPLICATE)
        else:
            outcomes.append(Outcome.SEQ_CONFLICT)
    return tuple(outcomes)


Span = tuple[int, int | None]
"""A declared seq range (from_seq, to_seq); to_seq None: every seq from from_seq on."""
Stream = tuple[str, str]


def pruned_keys(
    blocks: Iterable[IncomingBlock],
    stored: Collection[BlockKey],
    streams: Mapping[Stream, StreamState],
) -> frozenset[BlockKey]:
    """The keys of `blocks` whose stored block retention deleted.

    Retention deletes blocks below acked_through only, where every seq is stored or declared
    lost, and moves the stream's `pruned_through` to the highest it deleted: a seq at or below
    it that is neither in `stored` nor declared was stored. A declared seq that arrives after
    all is new (`advance`).
    """
    found: set[BlockKey] = set()
    for incoming in blocks:
        key = block_key(incoming)
        state = streams.get(incoming.stream)
        if key in stored or state is None or key[2] > state.pruned_through:
            continue
        if not _declared(state.declared, key[2]):
            found.add(key)
    return frozenset(found)


def _declared(spans: Iterable[Span], seq: int) -> bool:
    """Whether one of the declared ranges holds `seq`."""
    return any(low <= seq and (high is None or seq <= high) for low, high in spans)


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


def progress(state: StreamState, change: StreamChange) -> StreamState:
    """The stream after one batch: advanced by its seqs and declarations, conflict for good."""
    advanced = advance(state, change.seqs, change.declared)
    return replace(advanced, conflict=state.conflict or change.conflict)


Hole = tuple[str, str, int, int]
"""An open hole's `gaps` row: (gateway, epoch, from_seq, to_seq)."""


def hole_changes(
    before: Mapping[Stream, StreamState], after: Mapping[Stream, StreamState]
) -> tuple[list[Hole], list[Hole]]:
    """The holes whose rows a batch deletes, and those whose rows it writes, ascending.

    A hole the batch closed or shrank goes; one it opened, or the smaller hole left behind,
    comes; a hole it did not touch is in neither, so its row and place in the pages stay.
    """
    gone: list[Hole] = []
    opened: list[Hole] = []
    for stream, state in after.items():
        was = before.get(stream)
        old = set(() if was is None else was.missing)
        new = set(state.missing)
        gone.extend((*stream, low, high) for low, high in sorted(old - new))
        opened.extend((*stream, low, high) for low, high in sorted(new - old))
    return gone, opened


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
    return ChainBreak(incoming.stream, incoming.audit(Reason.CHAIN_BREAK, detail))


def neighbours(keys: Iterable[BlockKey]) -> set[BlockKey]:
    """Each key with the seqs before and after it."""
    return {
        (gateway, epoch, seq + step)
        for gateway, epoch, seq in keys
        for step in (-1, 0, 1)
        if 1 <= seq + step <= MAX_SEQ
    }


def dedupe_audits(
    blocks: Sequence[IncomingBlock],
    outcomes: Sequence[Outcome],
    pruned: Collection[BlockKey] = frozenset(),
) -> list[AuditEntry]:
    """One DUPLICATE or SEQ_CONFLICT audit row per block the batch did not store."""
    entries: list[AuditEntry] = []
    for incoming, outcome in zip(blocks, outcomes, strict=True):
        header = incoming.block.header
        where = f"gateway {header.gateway} epoch {header.epoch} seq {header.seq}"
        if outcome is Outcome.DUPLICATE and block_key(incoming) in pruned:
            reason = Reason.DUPLICATE
            detail = f"{where} was stored, then deleted by retention (storage.raw_days)"
        elif outcome is Outcome.DUPLICATE:
            reason, detail = Reason.DUPLICATE, f"{where} is stored already with the same bytes"
        elif outcome is Outcome.SEQ_CONFLICT:
            reason, detail = Reason.SEQ_CONFLICT, f"{where} is stored already with other bytes"
        else:
            continue
        entries.append(incoming.audit(reason, detail))
    return entries
