"""How an import's readings compare with those the outbox holds already (pure).

A (point, t) is one reading: the outbox never holds two. An imported row whose (point, t) the
outbox holds (sealed live by the agent, or imported earlier) is not sealed again: with the
same value and quality it is a `duplicate`, with another value or quality a `conflict`, which
the import names. The same holds between two rows of one file. Times compare as instants:
`2026-12-01 10:00:00` at +08:00 and `2026-12-01T02:00:00Z` are one (point, t).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from specs.records import Reading, Record, RecordFormatError, parse_iso_time

Key = tuple[str, str]
"""(point, t) as the import writes it: `t` in the wire's UTC text (`iso_time`)."""
Instant = tuple[str, float]
"""(point, Unix seconds): a (point, t) whatever offset its text was written with."""
EMPTY_SPAN: Final = (math.inf, -math.inf)
"""The span of a block without readings (`first_t` +inf, `last_t` -inf): it overlaps none."""


def instant(point: str, t: str) -> Instant:
    """The (point, t) of a reading as an instant."""
    return point, parse_iso_time(t)


def held_instant(point: str, t: str) -> Instant | None:
    """The (point, t) of a held reading as an instant; None: a time no import can bring.

    The sealer seals a reading whatever its time (readings outrank alarms and checks), so a
    held time may be outside what `parse_iso_time` takes; no imported row can match it.
    """
    try:
        return instant(point, t)
    except RecordFormatError:
        return None


def reading_span(records: Iterable[Record]) -> tuple[float, float] | None:
    """The first and last time (Unix seconds) of the readings among `records`; None: none.

    Times no import can bring (see `held_instant`) are left out of the span.
    """
    seconds = [
        held[1]
        for r in records
        if isinstance(r, Reading) and (held := held_instant(r.point, r.t)) is not None
    ]
    if not seconds:
        return None
    return min(seconds), max(seconds)


def same_reading(one: Reading, other: Reading) -> bool:
    """Whether two readings of one (point, t) agree: the same value and quality."""
    return one.value == other.value and one.quality == other.quality


def described(reading: Reading) -> str:
    """A reading as a conflict names it: `value 1.5, quality good`."""
    value = "null" if reading.value is None else repr(reading.value)
    return f"value {value}, quality {reading.quality.value}"


@dataclass(frozen=True, slots=True)
class Compared:
    """The readings of one batch against the outbox.

    `fresh`: not held, to be sealed; `duplicate`: held with the same value and quality (or
    held where the outbox cannot read it back: its key alone is known); `conflicts`: each
    key held with another value or quality, with the reading held.
    """

    fresh: tuple[Key, ...]
    duplicate: int
    conflicts: tuple[tuple[Key, Reading], ...]


def compare(pending: Mapping[Key, Reading], held: Mapping[Key, Reading | None]) -> Compared:
    """Sort `pending` by what the outbox holds of each key (`held`; None: key known only)."""
    fresh: list[Key] = []
    conflicts: list[tuple[Key, Reading]] = []
    duplicate = 0
    for key, reading in pending.items():
        if key not in held:
            fresh.append(key)
            continue
        kept = held[key]
        if kept is None or same_reading(reading, kept):
            duplicate += 1
        else:
            conflicts.append((key, kept))
    return Compared(tuple(fresh), duplicate, tuple(conflicts))
