"""Sums of float8 that are infinite past the largest double, as SQLite's and Python's are.

PostgreSQL's float8 addition raises 'value out of range: overflow' where IEEE gives infinity:
readings of 1.7e308 (an instrument's garbage, stored out_of_range) failed the ingest batch
that folded their minute, the buckets over them and the first fill of the rollups. These
expressions add at 2^-64 scale, which cannot overflow and is exact for every double above
2^-958, and give +-Infinity exactly where the unscaled sum would have overflowed.
"""

from __future__ import annotations

from typing import Final

_DOWN: Final = "5.421010862427522e-20::float8"  # 2^-64
_UP: Final = "18446744073709551616::float8"  # 2^64
_LARGEST_DOWN: Final = "9.745314011399998e288"  # the largest double at 2^-64


def _past_largest(scaled: str, finite: str) -> str:
    return (
        f"CASE WHEN abs({scaled}) > {_LARGEST_DOWN} THEN sign({scaled}) * 'Infinity'::float8"
        f" ELSE {finite} END"
    )


def sum_or_infinity(value: str) -> str:
    """The aggregate sum of `value` in SQL, infinite past the largest double."""
    scaled = f"sum({value} * {_DOWN})"
    return _past_largest(scaled, f"{scaled} * {_UP}")


def mean_or_infinity(value: str, count: str) -> str:
    """The aggregate mean of `value` over `count` in SQL, as sum / count.

    Infinite when the sum is past the largest double (as SQLite's avg() and the rollups'
    infinite totals give), else bit for bit avg()'s.
    """
    scaled = f"sum({value} * {_DOWN})"
    return _past_largest(scaled, f"{scaled} / {count} * {_UP}")


def plus_or_infinity(left: str, right: str) -> str:
    """`left + right` in SQL for two float8 values, infinite past the largest double."""
    scaled = f"({left} * {_DOWN} + {right} * {_DOWN})"
    return _past_largest(scaled, f"{left} + {right}")
