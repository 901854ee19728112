"""A block larger than the broker takes: its records sealed again in smaller blocks.

A broker closes the connection of a client that sends a packet over its Maximum Packet Size
(Mosquitto's `max_packet_size`, which `collector broker-config` sets from the collector's
`ingest.max_message_bytes`; EMQX has one by default), so such a block, sent first again on
every new session, kept the agent reconnecting for ever and nothing behind it was delivered.
One sealed before `outbox.flush_readings` was capped can be that large, and so can any block
on a broker set lower than the collectors' own limit.

The publisher sends no such block (`edge_agent.shell.publisher`). Its records go again, in
order, in `parts` blocks sealed at the head, and a gap record of reason `too_large` declares
its seq, which will never come (`lost` 0: nothing is lost); a block still too large is split
again when its turn comes. One transaction, under the outbox's lock (`Delivery.seal_smaller`).

A block of one record cannot be split, and is left as it is, unsent, until a broker takes it
(the next session's may). Dropping it for a gap record gained nothing: that record's own block
is larger (a one-reading block's packet 709 bytes, its declaration's 786), so it was dropped
for another, lost 0, for ever: a broker set to 400 bytes made 1,168 seals in 3 s, and the
reading's declaration went with the first of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite
import structlog

from edge_agent.core.chain import SealedBlock
from edge_agent.shell.outbox_damage import Append
from edge_agent.shell.outbox_reads import PAYLOAD, WITNESS_COLUMNS, as_sealed, witnesses
from edge_agent.shell.outbox_transaction import async_write_transaction
from specs.block import decode_block
from specs.records import GapReason, GapRecord, Record, iso_time
from specs.signing import SigningKey

log = structlog.get_logger("edge_agent.outbox")


def split_records(records: Sequence[Record], parts: int) -> list[tuple[Record, ...]]:
    """`records` in order, in `parts` runs as even as can be (fewer when there are fewer)."""
    parts = max(1, min(parts, len(records)))
    size, extra = divmod(len(records), parts)
    runs: list[tuple[Record, ...]] = []
    start = 0
    for part in range(parts):
        end = start + size + (1 if part < extra else 0)
        runs.append(tuple(records[start:end]))
        start = end
    return runs


async def seal_smaller(  # noqa: PLR0917 - one call, from the outbox
    db: aiosqlite.Connection,
    append: Append,
    key: SigningKey,
    block: tuple[str, int],
    parts: int,
    now: float,
    clock_synced: bool,
) -> tuple[SealedBlock, ...]:
    """Put the undelivered `block` (epoch, seq) in `parts` blocks at the head (see above).

    Returns the blocks sealed in its place, the gap record's first; none when there was nothing
    to do: the block was released meanwhile, its row no longer vouches for its payload (the
    send path declares it), or it holds one record (left as it is).
    """
    epoch, seq = block
    async with async_write_transaction(db):
        async with db.execute(
            f"SELECT thinned, {PAYLOAD}, {WITNESS_COLUMNS} FROM blocks"
            " WHERE epoch = ? AND seq = ? AND delivered_at IS NULL",
            (epoch, seq),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return ()
        thinned, payload = bool(row[0]), bytes(row[1])
        if not as_sealed(payload, *witnesses(row[2:]), key):
            return ()
        records = decode_block(payload).records
        if len(records) < 2:  # noqa: PLR2004 - one record cannot be split (see above)
            log.error("too_large_record_left", epoch=epoch, seq=seq, record=_kind(records))
            return ()
        await db.execute("DELETE FROM blocks WHERE epoch = ? AND seq = ?", (epoch, seq))
        gap = GapRecord(
            t=iso_time(now),
            reason=GapReason.TOO_LARGE,
            lost=0,
            epoch=epoch,
            from_seq=seq,
            to_seq=seq,
        )
        declared = await append((gap,), now=now, clock_synced=clock_synced)
        # A thinned replacement's runs stay thinned: dropped, not thinned again.
        runs = [
            await append(run, now=now, clock_synced=clock_synced, thinned=thinned)
            for run in split_records(records, parts)
        ]
    return (declared, *runs)


def _kind(records: Sequence[Record]) -> str:
    return type(records[0]).__name__ if records else "none"
