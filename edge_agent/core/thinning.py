"""Making room in a full outbox: pure decisions over the records of the blocks that give way.

When the outbox reaches its budget, the oldest undelivered blocks give way in two steps
(DESIGN section 6, "When the outbox is full"):

1. **Thinning.** Their readings are cut to the minimum, the maximum and the last reading of
   each point in each minute; alarm events and gap records are kept whole. What survives is
   sealed again, with a `thinned` gap record that names the readings dropped and the blocks
   that will never come.
2. **Dropping.** Blocks that were thinned already give way entirely, but for their alarm
   events and gap records, which travel on with an `outbox_full` gap record.

Readings kept are the original records, unchanged: a thinned series is a subset of what the
instruments said, never an average the instruments did not say.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from specs.block import MAX_BLOCK_READINGS
from specs.records import GapReason, GapRecord, Reading, Record, iso_time, parse_iso_time

_MINUTE = 60.0
BACKFILL_FLAG: Final = "backfill"
"""The flag of readings imported from an instrument's log (`edge-agent backfill`)."""


@dataclass(frozen=True, slots=True)
class EvictedBlock:
    """A block that gives way: its position and its records."""

    epoch: str
    seq: int
    records: tuple[Record, ...]


@dataclass(frozen=True, slots=True)
class Replacement:
    """What survives the blocks that gave way, ready to be sealed (`blocks`).

    `records` starts with one gap record per epoch touched, then the kept records in their
    original order. `dropped` counts the readings that are gone for good.
    """

    records: tuple[Record, ...]
    dropped: int
    kept_readings: int

    @property
    def blocks(self) -> list[tuple[Record, ...]]:
        """`records` in order, MAX_BLOCK_READINGS to a block: no larger than any other block.

        Up to `outbox.max_bytes / 20` (8 MiB at most) of blocks give way at once, and
        thinning may keep nearly all of it (a point read once a minute loses nothing).
        """
        size = MAX_BLOCK_READINGS
        return [self.records[start : start + size] for start in range(0, len(self.records), size)]


def _minute_of(reading: Reading) -> tuple[str, int]:
    return (reading.point, int(parse_iso_time(reading.t) // _MINUTE))


def thin_readings(readings: Sequence[Reading]) -> set[int]:
    """Indexes into `readings` to keep: min, max and last value per point per minute.

    A reading without a value (bad quality) can only be kept as the last of its minute.
    """
    buckets: dict[tuple[str, int], list[int]] = {}
    for index, reading in enumerate(readings):
        buckets.setdefault(_minute_of(reading), []).append(index)
    keep: set[int] = set()
    for members in buckets.values():
        last = max(members, key=lambda i: (parse_iso_time(readings[i].t), i))
        keep.add(last)
        valued = [i for i in members if readings[i].value is not None]
        if valued:
            keep.add(min(valued, key=lambda i: (readings[i].value, i)))
            keep.add(max(valued, key=lambda i: (readings[i].value, -i)))
    return keep


def _span(readings: Iterable[Reading]) -> tuple[str | None, str | None]:
    times = [parse_iso_time(r.t) for r in readings]
    if not times:
        return None, None
    return iso_time(min(times)), iso_time(max(times))


def _runs(blocks: Sequence[EvictedBlock]) -> list[list[EvictedBlock]]:
    """The blocks grouped into runs of consecutive seqs of one epoch.

    A gap record declares a contiguous seq range closed: a range spanning a block that did
    not give way would let the collector close, and acknowledge, a block it never got.
    """
    runs: list[list[EvictedBlock]] = []
    for block in sorted(blocks, key=lambda b: (b.epoch, b.seq)):
        last = runs[-1][-1] if runs else None
        if last is not None and last.epoch == block.epoch and last.seq + 1 == block.seq:
            runs[-1].append(block)
        else:
            runs.append([block])
    return runs


def _gaps(
    blocks: Sequence[EvictedBlock],
    lost: Sequence[tuple[EvictedBlock, Reading]],
    reason: GapReason,
    now: float,
) -> list[GapRecord]:
    """One gap record per run of consecutive seqs that gave way."""
    gaps = []
    for run in _runs(blocks):
        members = {(b.epoch, b.seq) for b in run}
        gone = [r for b, r in lost if (b.epoch, b.seq) in members]
        t_from, t_to = _span(gone)
        gaps.append(
            GapRecord(
                t=iso_time(now),
                reason=reason,
                lost=len(gone),
                t_from=t_from,
                t_to=t_to,
                epoch=run[0].epoch,
                from_seq=run[0].seq,
                to_seq=run[-1].seq,
            )
        )
    return gaps


def _replacement(
    blocks: Sequence[EvictedBlock], keep_reading: set[int], reason: GapReason, now: float
) -> Replacement:
    kept: list[Record] = []
    lost: list[tuple[EvictedBlock, Reading]] = []
    index = 0
    for block in blocks:
        for record in block.records:
            if isinstance(record, Reading):
                if index in keep_reading:
                    kept.append(record)
                else:
                    lost.append((block, record))
                index += 1
            else:
                kept.append(record)
    gaps = _gaps(blocks, lost, reason, now)
    return Replacement(records=(*gaps, *kept), dropped=len(lost), kept_readings=len(keep_reading))


def readings_of(blocks: Sequence[EvictedBlock]) -> list[Reading]:
    """Every reading of the blocks, in block order."""
    return [r for b in blocks for r in b.records if isinstance(r, Reading)]


def thin(blocks: Sequence[EvictedBlock], *, now: float) -> Replacement:
    """Step 1: keep min/max/last per point per minute, every alarm and gap record."""
    return _replacement(blocks, thin_readings(readings_of(blocks)), GapReason.THINNED, now)


def let_go_backfill_keys(
    blocks: Sequence[EvictedBlock], replacement: Replacement
) -> set[tuple[str, str]]:
    """(point, t) of the imported readings (flag `backfill`) that `replacement` lets go.

    An import remembers these keys so that a file imported twice adds nothing; readings a
    full outbox let go never reach the collector, so their keys go with them and the same
    file imported again brings them back. Kept readings are the originals: their keys stay.
    """
    kept = {(r.point, r.t) for r in replacement.records if isinstance(r, Reading)}
    return set(imported_keys(readings_of(blocks))) - kept


def imported_keys(records: Iterable[Record]) -> list[tuple[str, str]]:
    """(point, t) of the imported readings (flag `backfill`) among `records`, in order.

    The keys an import remembers in the outbox (`backfill_keys`): a block carrying these
    readings takes their keys with it when retention deletes it after delivery.
    """
    return [(r.point, r.t) for r in records if isinstance(r, Reading) and BACKFILL_FLAG in r.flags]


def drop(blocks: Sequence[EvictedBlock], *, now: float) -> Replacement:
    """Step 2: keep only the alarm events and gap records."""
    return _replacement(blocks, set(), GapReason.OUTBOX_FULL, now)


@dataclass(frozen=True, slots=True)
class GivingWay:
    """The blocks that give way (epoch, seq), what replaces them, the imported keys let go.

    `thinned`: step 1 (their readings thinned) or step 2 (dropped). `let_go` is
    `let_go_backfill_keys`, sorted. The blocks' records are not kept: up to 8 MiB of them
    are freed where they were decoded, with the rest of what thinning made.
    """

    blocks: tuple[tuple[str, int], ...]
    replacement: Replacement
    thinned: bool
    let_go: tuple[tuple[str, str], ...]


def give_way(oldest: Sequence[tuple[EvictedBlock, bool]], *, now: float) -> GivingWay | None:
    """Which of the `oldest` undelivered blocks (each: whether thinned already) give way, how.

    The full ones are thinned, when that drops any reading; else all of them are dropped.
    None when neither drops a reading (only alarm events and gap records are left: they never
    give way).
    """
    full = [block for block, thinned in oldest if not thinned]
    if full:
        replacement = thin(full, now=now)
        if replacement.dropped:
            return _giving_way(full, replacement, thinned=True)
    chosen = [block for block, _ in oldest]
    if not chosen:
        return None
    replacement = drop(chosen, now=now)
    if replacement.dropped == 0:
        return None
    return _giving_way(chosen, replacement, thinned=False)


def _giving_way(
    blocks: Sequence[EvictedBlock], replacement: Replacement, *, thinned: bool
) -> GivingWay:
    let_go = tuple(sorted(let_go_backfill_keys(blocks, replacement)))
    return GivingWay(tuple((b.epoch, b.seq) for b in blocks), replacement, thinned, let_go)
