"""Pure: which gap records of a batch a storage keeps, the first of each identity.

The agent seals a block's records again in other blocks: a new epoch after its sequence state
was lost (`Outbox.start_new_epoch`, `reseal_older_epochs`) or a block too large for the broker
split (`edge_agent.shell.outbox_oversize`). A gap record it carried comes again, in a block the
collector has not stored, when the first one's ACK was lost. Stored twice, it would be listed
twice by GET /v1/gaps and its `lost` counted twice. A gap record is every field the agent
signs (docs/contract.md, Gap record) but its place in the block: two records equal in all of
them (the same `t`, reason, lost, time span, point and declared seqs) are one loss sealed
twice; two that differ in any field (another `lost` or reason over the same seqs, another
`t`) are two, and both are kept.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from typing import Final

from collector.model import AuditEntry, GapEntry, IncomingBlock, Reason
from collector.storage.readings import AUDIT_SAMPLE
from specs.records import iso_time

GapKey = tuple[str, float]
"""Where a gap record is looked up: (gateway, t)."""
GapIdentity = tuple[
    str, float, str, int | None, str | None, float | None, float | None, str | None,
    int | None, int | None,
]  # fmt: skip
"""A gap record's identity: (gateway, t, reason, lost, point, t_from, t_to, epoch, from_seq,
to_seq), the columns of `GAP_IDENTITY` in that order."""
GAP_IDENTITY = "gateway, t, reason, lost, point, t_from, t_to, declared_epoch, from_seq, to_seq"
"""The `gaps` columns of a stored gap record's identity (kind 'record')."""
_REPEATS: Final = (
    "SELECT id, gateway FROM (SELECT id, gateway, row_number() OVER (PARTITION BY"
    f" {GAP_IDENTITY} ORDER BY id) AS nth FROM gaps WHERE kind = 'record') AS r WHERE nth > 1"
)


def drop_repeats(now: str) -> tuple[str, str]:
    """SQL for both backends: audit, then delete, the repeats an earlier collector stored.

    Before 55ccbb1 a gap record sealed again in another block got a row of its own. `now` is
    the backend's SQL for the current unix time. The first stored (lowest id: ids grow in
    the order rows were stored) of each identity stays, as ingest keeps it. A window's
    partitions put NULLs together, as the identity's tuples compare them: a unique index
    would hold two records with a NULL `lost` or `point` apart, which is why the schema has
    none (ingest checks under the gateway's lock). One audit row per gateway says how many
    went, as schema 5 did for repeated readings.
    """
    audit = (
        "INSERT INTO audit (at, gateway, topic, reason, detail, payload_hash)"
        f" SELECT {now}, gateway, '', 'duplicate', 'schema upgrade: ' || CAST(count(*) AS TEXT)"
        " || ' gap record(s) of gateway ' || gateway || ' repeated an earlier one in every"
        " field (sealed again by the agent, stored again by an earlier collector) and were"
        f" removed; the first stays', '' FROM ({_REPEATS}) AS d GROUP BY gateway"
    )
    return audit, f"DELETE FROM gaps WHERE id IN (SELECT id FROM ({_REPEATS}) AS d)"


def identity(gateway: str, gap: GapEntry) -> GapIdentity:
    """The identity of `gap`, carried by a block of `gateway`."""
    return (
        gateway,
        gap.t,
        gap.reason.value,
        gap.lost,
        gap.point,
        gap.t_from,
        gap.t_to,
        gap.epoch,
        gap.from_seq,
        gap.to_seq,
    )


def gap_keys(blocks: Iterable[IncomingBlock]) -> set[GapKey]:
    """The (gateway, t) of every gap record the blocks would store."""
    return {(b.block.header.gateway, gap.t) for b in blocks for gap in b.entries.gaps}


def unique_gaps(
    blocks: Sequence[IncomingBlock], stored: Collection[GapIdentity]
) -> tuple[tuple[IncomingBlock, ...], tuple[AuditEntry, ...]]:
    """The blocks with only gap records of a new identity, and one `duplicate` row per block cut.

    `stored` holds the identities among the blocks' gap records that the database has already.
    The first record of an identity is kept (stored before, or earlier in `blocks`, whatever
    their epochs); a later one is left out, as a reading of a stored (point, t) is. The blocks
    stay stored: only the record's `gaps` row and its live-feed event are not written again.
    """
    known = set(stored)
    kept_blocks: list[IncomingBlock] = []
    audits: list[AuditEntry] = []
    for incoming in blocks:
        gateway = incoming.block.header.gateway
        kept: list[GapEntry] = []
        repeats: list[GapEntry] = []
        for gap in incoming.entries.gaps:
            key = identity(gateway, gap)
            if key in known:
                repeats.append(gap)
            else:
                known.add(key)
                kept.append(gap)
        if not repeats:
            kept_blocks.append(incoming)
            continue
        kept_blocks.append(replace(incoming, entries=replace(incoming.entries, gaps=tuple(kept))))
        header = incoming.block.header
        named = ", ".join(f"{g.reason.value}@{iso_time(g.t)}" for g in repeats[:AUDIT_SAMPLE])
        detail = (
            f"gateway {header.gateway} epoch {header.epoch} seq {header.seq}: {len(repeats)}"
            " gap record(s) stored already from another block, the same in every field (sealed"
            f" again by the agent); the first one is kept, these are not stored: {named}"
            + (", ..." if len(repeats) > AUDIT_SAMPLE else "")
        )
        audits.append(incoming.audit(Reason.DUPLICATE, detail))
    return tuple(kept_blocks), tuple(audits)
