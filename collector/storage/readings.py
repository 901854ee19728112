"""Pure: which readings of a batch a storage keeps, and the rows they make.

Readings are unique per (gateway, point, t): the first stored wins, later ones are audited,
not stored. Live readings are newer than everything stored, so a batch of them needs one
lookup per series, not one per reading.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Final

from collector.model import AuditEntry, IncomingBlock, ReadingEntry, Reason
from specs.records import iso_time

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
    keys: Iterable[ReadingKey], newest: Mapping[tuple[str, str], float], cutoff: float
) -> list[ReadingKey]:
    """The keys that may be stored already: not later than their series' newest t, or past `cutoff`.

    Live readings are newer than everything stored, so a batch of them needs one lookup
    per series (`newest`: the newest stored t not later than `cutoff`), not one per reading.
    A reading stamped past the collector's clock (collector.storage.ahead) is no measure of
    the series: `newest` stops at `cutoff`, so such a reading stored does not send every later
    reading of its point to the lookup, and those past `cutoff` are looked up themselves.
    """
    return [
        key
        for key in keys
        if key[2] > cutoff or ((limit := newest.get(key[:2])) is not None and key[2] <= limit)
    ]


def named(readings: Sequence[ReadingEntry]) -> str:
    """The first few (point, t) of `readings`, as an audit row names them."""
    first = ", ".join(f"{r.point}@{iso_time(r.t)}" for r in readings[:AUDIT_SAMPLE])
    return first + (", ..." if len(readings) > AUDIT_SAMPLE else "")


def _reading_audit(
    incoming: IncomingBlock, reason: Reason, repeats: Sequence[ReadingEntry]
) -> AuditEntry:
    header = incoming.block.header
    what = (
        "the same value, unit and quality"
        if reason is Reason.DUPLICATE
        else "another value, unit or quality"
    )
    detail = (
        f"gateway {header.gateway} epoch {header.epoch} seq {header.seq}: {len(repeats)}"
        f" reading(s) of a (point, t) stored already, with {what}; the first one is kept,"
        f" these are not stored: {named(repeats)}"
    )
    return incoming.audit(reason, detail)


def within_retention(
    blocks: Sequence[IncomingBlock], kept_from: float | None
) -> tuple[tuple[IncomingBlock, ...], tuple[AuditEntry, ...]]:
    """The blocks without readings from before `kept_from`, and one audit row per block cut.

    `kept_from` is the start of the oldest month whose raw readings retention keeps (None:
    it never deleted any). Before it the collector holds no (point, t) to recognise a
    reading by, so one arriving again (an offline log imported again, a backlog sealed again)
    would be stored and folded into the rollups a second time: such readings are left out,
    audited `past_retention`, whether or not they came before. The blocks stay stored.
    """
    if kept_from is None:
        return tuple(blocks), ()
    kept_blocks: list[IncomingBlock] = []
    audits: list[AuditEntry] = []
    for incoming in blocks:
        readings = incoming.entries.readings
        past = [r for r in readings if r.t < kept_from]
        if not past:
            kept_blocks.append(incoming)
            continue
        entries = replace(incoming.entries, readings=tuple(r for r in readings if r.t >= kept_from))
        kept_blocks.append(replace(incoming, entries=entries))
        header = incoming.block.header
        detail = (
            f"gateway {header.gateway} epoch {header.epoch} seq {header.seq}: {len(past)}"
            f" reading(s) from before {iso_time(kept_from)}, whose raw readings retention"
            " deleted (storage.raw_days): not stored nor counted in the rollups, which may"
            f" hold them already: {named(past)}"
        )
        audits.append(incoming.audit(Reason.PAST_RETENTION, detail))
    return tuple(kept_blocks), tuple(audits)


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
