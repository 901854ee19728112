"""Per-minute rollups of stored readings, kept up to date by every ingest (pure part).

`GET /v1/readings?every=` over a month of 1 s readings would aggregate millions of rows per
request; the rollups make it tens of thousands (one row per series and minute), the way a
time-series database keeps continuous aggregates. Each ingest folds the readings it stores
into the rollups of their minutes; a batch's readings are pre-aggregated here, and the
storage merges each row into the one held (the same merge, in SQL). What a rollup counts is
what `every=` counts: values whose quality is not bad; quota and unit are the newest
reading's. Retention drops raw months and keeps the rollups (`storage.rollup_days`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from collector.model import IncomingBlock, ReadingEntry

ROLLUP_SECONDS: Final = 60.0
"""The width of one rollup row."""
BAD: Final = "bad"


def minute_of(t: float) -> float:
    """The start of the minute holding `t` (unix seconds)."""
    return math.floor(t / ROLLUP_SECONDS) * ROLLUP_SECONDS


@dataclass(frozen=True, slots=True)
class MinuteRollup:
    """The readings of one series in one minute: n values, their extremes, sum and newest.

    `newest_t` is the newest reading's time (its quota and unit are the row's); `last_t` and
    `last_value` the newest counted value's (None when the minute holds no counted value).
    """

    gateway: str
    point: str
    minute: float
    quota: str
    unit: str
    n: int
    lo: float | None
    hi: float | None
    total: float | None
    newest_t: float
    last_t: float | None
    last_value: float | None


def _counted(reading: ReadingEntry) -> float | None:
    return None if reading.quality == BAD else reading.value


def _fold(held: MinuteRollup | None, gateway: str, reading: ReadingEntry) -> MinuteRollup:
    value = _counted(reading)
    if held is None:
        return MinuteRollup(
            gateway, reading.point, minute_of(reading.t), reading.quota, reading.unit,
            0 if value is None else 1, value, value, value, reading.t,
            None if value is None else reading.t, value,
        )  # fmt: skip
    newer = reading.t >= held.newest_t
    quota, unit = (reading.quota, reading.unit) if newer else (held.quota, held.unit)
    if value is None:
        return MinuteRollup(
            gateway, held.point, held.minute, quota, unit, held.n, held.lo, held.hi,
            held.total, max(held.newest_t, reading.t), held.last_t, held.last_value,
        )  # fmt: skip
    later = held.last_t is None or reading.t >= held.last_t
    return MinuteRollup(
        gateway,
        held.point,
        held.minute,
        quota,
        unit,
        held.n + 1,
        value if held.lo is None else min(held.lo, value),
        value if held.hi is None else max(held.hi, value),
        value if held.total is None else held.total + value,
        max(held.newest_t, reading.t),
        reading.t if later else held.last_t,
        value if later else held.last_value,
    )


def minute_rollups(blocks: Iterable[IncomingBlock]) -> list[MinuteRollup]:
    """The readings of `blocks` (those being stored) aggregated per (gateway, point, minute)."""
    rows: dict[tuple[str, str, float], MinuteRollup] = {}
    for incoming in blocks:
        gateway = incoming.block.header.gateway
        for reading in incoming.entries.readings:
            key = (gateway, reading.point, minute_of(reading.t))
            rows[key] = _fold(rows.get(key), gateway, reading)
    return list(rows.values())


def merged(held: MinuteRollup, new: MinuteRollup) -> MinuteRollup:
    """Two rollups of one (gateway, point, minute) as one: what the storages' upsert does."""
    newer = new.newest_t >= held.newest_t
    later = held.last_t is None or (new.last_t is not None and new.last_t >= held.last_t)
    return MinuteRollup(
        held.gateway,
        held.point,
        held.minute,
        new.quota if newer else held.quota,
        new.unit if newer else held.unit,
        held.n + new.n,
        _pick(min, held.lo, new.lo),
        _pick(max, held.hi, new.hi),
        _pick(operator.add, held.total, new.total),
        max(held.newest_t, new.newest_t),
        new.last_t if later and new.last_t is not None else held.last_t,
        new.last_value if later and new.last_t is not None else held.last_value,
    )


def _pick(
    choose: Callable[[float, float], float], one: float | None, other: float | None
) -> float | None:
    if one is None:
        return other
    if other is None:
        return one
    return choose(one, other)
