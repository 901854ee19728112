"""Pure parts of the PostgreSQL storage: month arithmetic, lock order, URL redaction."""

from __future__ import annotations

import calendar
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.config import MAX_AHEAD_ALLOWANCE
from collector.storage.base import StorageError
from collector.storage.months import month_of, month_start, months_first, next_month, previous_month
from collector.storage.postgres.connection import check_url
from collector.storage.postgres.locks import gateway_lock_key, lock_order
from collector.storage.postgres.partitions import (
    ingest_horizon,
    month_of_partition,
    partition_name,
)
from collector.storage.urls import redacted

# From 1900 to 2200: what instruments and clocks can plausibly claim.
TIMES = st.floats(min_value=-2_208_988_800.0, max_value=7_258_118_400.0, allow_nan=False)


@given(TIMES)
def test_every_time_falls_inside_the_bounds_of_its_month(t: float) -> None:
    month = month_of(t)
    assert month_start(month) <= t < month_start(next_month(month))


@given(st.integers(1900, 2200), st.integers(1, 12))
def test_month_starts_split_time_exactly(year: int, number: int) -> None:
    start = month_start((year, number))
    assert month_of(start) == (year, number)
    assert month_of(math.nextafter(start, -math.inf)) == previous_month((year, number))
    assert previous_month(next_month((year, number))) == (year, number)


@given(TIMES)
def test_the_largest_allowance_makes_at_most_three_months_past_the_current(t: float) -> None:
    """PostgresStorage.ingest's horizon at the largest `ingest.ahead_allowance` config takes:
    an ingest makes no month past it."""
    assert ingest_horizon(t, MAX_AHEAD_ALLOWANCE) <= next_month(next_month(next_month(month_of(t))))


def test_a_time_a_hair_below_midnight_stays_in_the_old_month() -> None:
    april = float(calendar.timegm((2024, 4, 1, 0, 0, 0)))
    below = math.nextafter(april, -math.inf)  # 0.24 us earlier: datetime rounds it to April
    assert month_of(below) == (2024, 3)
    assert month_of(april) == (2024, 4)


@given(st.integers(1, 9999), st.integers(1, 12))
def test_partition_names_round_trip(year: int, number: int) -> None:
    name = partition_name((year, number))
    assert month_of_partition(name) == (year, number)
    assert name == f"readings_y{year:04d}m{number:02d}"


def test_tables_not_named_like_partitions_are_not_months() -> None:
    assert month_of_partition("readings_default") is None
    assert month_of_partition("readings_y2024m3") is None


@given(st.lists(st.text(min_size=1, max_size=20), max_size=20))
def test_locks_are_taken_in_one_ascending_order_each_once(gateways: list[str]) -> None:
    order = lock_order(gateways)
    assert order == sorted(set(order))
    assert set(order) == {gateway_lock_key(g) for g in gateways}
    assert order == lock_order(reversed(gateways))
    assert all(-(2**63) <= key < 2**63 for key in order)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://gz:s3cret@db.example:5433/collector",
            "postgresql://gz:***@db.example:5433/collector",
        ),
        (
            "postgres://gz:s3cret@[::1]/c?sslmode=require",
            "postgres://gz:***@[::1]/c?sslmode=require",
        ),
        ("postgresql://gz@db/collector", "postgresql://gz@db/collector"),
        ("postgresql://gz:s3cret@h1:5432,h2:5433/c", "postgresql://gz:***@h1:5432,h2:5433/c"),
        (
            "postgresql://gz@db/c?password=s3cret&sslmode=off",
            "postgresql://gz@db/c?password=***&sslmode=off",
        ),
        ("postgresql://gz:p@ss:w0rd@db/c", "postgresql://gz:***@db/c"),
    ],
)
def test_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    assert redacted(url) == shown


@pytest.mark.parametrize("url", ["sqlite:///x.db", "postgresql://", "mysql://h/db", "postgresql"])
def test_only_postgres_urls_are_accepted(url: str) -> None:
    with pytest.raises(StorageError, match="is not postgresql://"):
        check_url(url)


def test_months_first_makes_the_blocks_needing_few_months_whole_before_a_flood() -> None:
    flood = {(2000 + n // 12, n % 12 + 1) for n in range(40)}  # 2000-01 .. 2003-04
    live, other = {(2026, 5)}, {(2026, 4), (2026, 5)}
    chosen = months_first(flood | other, [flood, live, other], budget=24)
    assert chosen[:2] == [(2026, 5), (2026, 4)]  # the live blocks' months, fewest first
    assert chosen[2:] == sorted(flood)[:22]  # then the flood's oldest: it progresses
    assert months_first(flood, [flood], budget=24) == sorted(flood)[:24]
    assert months_first(set(), [flood], budget=24) == []


@given(
    st.sets(st.tuples(st.integers(1970, 2030), st.integers(1, 12)), max_size=60),
    st.lists(st.sets(st.tuples(st.integers(1970, 2030), st.integers(1, 12))), max_size=6),
    st.integers(0, 30),
)
def test_months_first_chooses_missing_months_within_the_budget(
    missing: set[tuple[int, int]], needs: list[set[tuple[int, int]]], budget: int
) -> None:
    chosen = months_first(missing, needs, budget)
    assert len(chosen) == len(set(chosen)) == min(budget, len(missing))
    assert set(chosen) <= missing
    smallest = min((need & missing for need in needs), key=len, default=set())
    if len(smallest) <= budget:  # the block missing fewest months is never starved
        assert smallest <= set(chosen)
