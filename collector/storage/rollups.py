"""Per-minute rollups of stored readings, kept up to date by every ingest (pure part).

`GET /v1/readings?every=` over a month of 1 s readings would aggregate millions of rows per
request; the rollups make it tens of thousands (one row per series and minute), the way a
time-series database keeps continuous aggregates. Each ingest folds the readings it stores
into the rollups of their minutes; a batch's readings are pre-aggregated here, and the
storage merges each row into the one held (the same merge, in SQL). What a rollup counts is
what `every=` counts: values whose quality is not bad. A row is one (quota, unit) of a
series' minute: a point re-purposed mid-minute has a row per label, never values of two
quotas or units summed under one (collector.storage.rollup_split). Retention drops raw
months and keeps the rollups (`storage.rollup_days`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from collector.model import IncomingBlock
from collector.storage.float_sums import FloatSql

ROLLUP_SECONDS: Final = 60.0
"""The width of one rollup row."""
BAD: Final = "bad"


def minute_of(t: float) -> float:
    """The start of the minute holding `t` (unix seconds)."""
    return math.floor(t / ROLLUP_SECONDS) * ROLLUP_SECONDS


@dataclass(frozen=True, slots=True)
class MinuteRollup:
    """The readings of one series' (quota, unit) in one minute: n values, extremes, sum, newest.

    `newest_t` is the newest reading's time; `last_t` and
    `last_value` the newest counted value's (None when the minute holds no counted value).
    `total` is None when n is 0, and also once sums of the minute went past the largest
    double both ways (+inf and -inf: not a number, which SQLite cannot store): nothing
    added later makes it a number again.
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


def minute_rollups(blocks: Iterable[IncomingBlock]) -> list[MinuteRollup]:
    """The readings of `blocks` (being stored) per (gateway, point, minute, quota, unit)."""
    # Plain lists while folding (a frozen record per reading would cost more than the sums),
    # holding the fields of MinuteRollup from quota on, in order.
    folding: dict[tuple[str, str, float, str, str], list[Any]] = {}
    for incoming in blocks:
        gateway = incoming.block.header.gateway
        for reading in incoming.entries.readings:
            t = reading.t
            minute = math.floor(t / ROLLUP_SECONDS) * ROLLUP_SECONDS
            key = (gateway, reading.point, minute, reading.quota, reading.unit)
            value = None if reading.quality == BAD else reading.value
            held = folding.get(key)
            if held is None:
                counted = value is not None
                folding[key] = [
                    reading.quota, reading.unit, int(counted), value, value, value, t,
                    t if counted else None, value,
                ]  # fmt: skip
                continue
            held[6] = max(held[6], t)
            if value is None:
                continue
            if held[2]:
                held[3] = min(held[3], value)
                held[4] = max(held[4], value)
                held[5] += value
            else:
                held[3] = held[4] = held[5] = value
            held[2] += 1
            if held[7] is None or t >= held[7]:
                held[7], held[8] = t, value
    return [
        MinuteRollup(gateway, point, minute, *held)
        for (gateway, point, minute, _, _), held in folding.items()
    ]


def rollup_rows(rollups: Iterable[MinuteRollup]) -> list[tuple[object, ...]]:
    """The rows of `rollups` in the columns `fold_statement` names."""
    return [
        (r.gateway, r.point, r.minute, r.quota, r.unit, r.n, r.lo, r.hi, r.total,
         r.newest_t, r.last_t, r.last_value)
        for r in rollups
    ]  # fmt: skip


def fold_statement(
    *, rows: str, smaller: str, larger: str, total_sum: str = "o.total + excluded.total"
) -> str:
    """`merged`, row by row in SQL: the upsert of `rows` into `readings_1m`, in a dialect.

    `rows` gives the new rollups (`rollup_rows`' columns); `smaller`/`larger` name the
    dialect's two-argument min and max, kept from NULL by coalesce where a side may be NULL;
    `total_sum` adds the two totals (both counted) as IEEE does, infinite past the largest
    double, NULL for NaN and for a NULL side (a total that is not a number stays so).
    """
    return f"""
INSERT INTO readings_1m AS o
    (gateway, point, minute, quota, unit, n, lo, hi, total, newest_t, last_t, last_value)
{rows}
ON CONFLICT (gateway, point, minute, quota, unit) DO UPDATE SET
    n = o.n + excluded.n,
    lo = coalesce({smaller}(o.lo, excluded.lo), o.lo, excluded.lo),
    hi = coalesce({larger}(o.hi, excluded.hi), o.hi, excluded.hi),
    total = CASE WHEN o.n = 0 THEN excluded.total
                 WHEN excluded.n = 0 THEN o.total
                 ELSE {total_sum} END,
    newest_t = {larger}(o.newest_t, excluded.newest_t),
    last_value = CASE WHEN excluded.last_t IS NOT NULL
                       AND (o.last_t IS NULL OR excluded.last_t >= o.last_t)
                      THEN excluded.last_value ELSE o.last_value END,
    last_t = coalesce({larger}(o.last_t, excluded.last_t), o.last_t, excluded.last_t)
"""


def merged(held: MinuteRollup, new: MinuteRollup) -> MinuteRollup:
    """Two rollups of one (gateway, point, minute, quota, unit) as one: the storages' upsert."""
    later = held.last_t is None or (new.last_t is not None and new.last_t >= held.last_t)
    return MinuteRollup(
        held.gateway,
        held.point,
        held.minute,
        held.quota,
        held.unit,
        held.n + new.n,
        _pick(min, held.lo, new.lo),
        _pick(max, held.hi, new.hi),
        new.total if held.n == 0 else held.total if new.n == 0 else _plus(held.total, new.total),
        max(held.newest_t, new.newest_t),
        new.last_t if later and new.last_t is not None else held.last_t,
        new.last_value if later and new.last_t is not None else held.last_value,
    )


def _plus(one: float | None, other: float | None) -> float | None:
    """Two counted totals added as the storages' upsert adds them: NaN and unknown are None."""
    if one is None or other is None:
        return None
    total = one + other
    return None if math.isnan(total) else total


def rollup_mean(sums: FloatSql) -> str:
    """SQL for the mean of the rollups `m` grouped into one bucket, in a dialect.

    NULL when a minute's total is not a number (counted values, no total: see MinuteRollup),
    and when the totals sum to NaN; infinite past the largest double.
    """
    mean = sums.mean_or_infinity("m.total", "nullif(sum(m.n), 0)", "min(m.lo)", "max(m.hi)")
    return (
        "CASE WHEN count(CASE WHEN m.n > 0 AND m.total IS NULL THEN 1 END) > 0 THEN NULL"
        f" ELSE {mean} END"
    )


def _pick(
    choose: Callable[[float, float], float], one: float | None, other: float | None
) -> float | None:
    if one is None:
        return other
    if other is None:
        return one
    return choose(one, other)
