"""Pure decisions every storage implementation makes inside its ingest transaction.

Idempotency is by set membership of (gateway, epoch, seq), never by a high-water mark: MQTT
redelivery can yield 1,2,3,2,3,4. Sequence progress is tracked incrementally: each new seq
either extends the stream (possibly opening a hole) or fills part of a hole, so no step ever
rescans the stored blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from collector.storage.base import IncomingBlock, Outcome, StreamState

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
