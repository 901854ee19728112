"""UTC calendar months: the unit of partitioning and of retention (pure)."""

from __future__ import annotations

import calendar
from collections.abc import Iterable
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
