"""UTC calendar months: the unit of partitioning and of retention (pure)."""

from __future__ import annotations

import calendar
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime

Month = tuple[int, int]
"""A UTC calendar month as (year, month)."""


def month_start(month: Month) -> float:
    """Unix seconds at 00:00 UTC on the first day of `month`."""
    year, number = month
    return float(calendar.timegm((year, number, 1, 0, 0, 0)))


def next_month(month: Month) -> Month:
    """The month after `month`."""
    year, number = month
    return (year + 1, 1) if number == 12 else (year, number + 1)  # noqa: PLR2004 - December


def previous_month(month: Month) -> Month:
    """The month before `month`."""
    year, number = month
    return (year - 1, 12) if number == 1 else (year, number - 1)


def month_of(t: float) -> Month:
    """The UTC month holding unix time `t`, exactly as the partition bounds split time.

    datetime rounds to microseconds, so a `t` just below a month's start may land in that
    month: the bounds decide.
    """
    moment = datetime.fromtimestamp(t, UTC)
    month = (moment.year, moment.month)
    if t < month_start(month):
        return previous_month(month)
    if t >= month_start(next_month(month)):
        return next_month(month)
    return month


def months_of(times: Iterable[float]) -> set[Month]:
    """The months that hold `times`."""
    return {month_of(t) for t in times}


def months_first(
    missing: Collection[Month], needs: Sequence[Collection[Month]], budget: int
) -> list[Month]:
    """The months of `missing` to make in this ingest, at most `budget` of them.

    Each block's missing months whole, the blocks missing fewest first, so that one block
    naming many months does not hold up the others of its batch; then the oldest months left,
    so that the block naming many progresses by `budget` months each try.
    """
    chosen: dict[Month, None] = {}
    for own in sorted((sorted(set(need).intersection(missing)) for need in needs), key=len):
        if len(chosen.keys() | own) <= budget:
            chosen.update(dict.fromkeys(own))
    rest = [m for m in sorted(missing) if m not in chosen]
    return [*chosen, *rest][:budget]
