"""Sums and means of float8 in SQL that both backends compute alike.

Infinite past the largest double, as Python's are; NULL where IEEE gives NaN.

PostgreSQL's float8 addition raises 'value out of range: overflow' where IEEE gives infinity:
readings of 1.7e308 (an instrument's garbage, stored out_of_range) failed the ingest batch
that folded their minute, the buckets over them and the first fill of the rollups. These
expressions add at 2^-64 scale, which cannot overflow and is exact for every double above
2^-958, and give +-Infinity exactly where the unscaled sum would have overflowed. SQLite
runs the same scaled sums: its own avg() adds unscaled, so a bucket of +1.7e308, +1.7e308,
-1.7e308 was infinite there and 5.7e307 on PostgreSQL.

Infinities of both signs (rollup totals of garbage of both signs) sum to NaN. SQLite stores
and returns NaN as NULL and PostgreSQL keeps it; so both say NULL: JSON has no NaN either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

_LARGEST_DOWN: Final = "9.745314011399998e288"  # the largest double at 2^-64


@dataclass(frozen=True, slots=True)
class FloatSql:
    """One dialect's literals: 2^-64, 2^64, infinity, and its NaN (None: it has none)."""

    down: str
    up: str
    infinity: str
    nan: str | None

    def _past_largest(self, scaled: str, finite: str) -> str:
        nan = "" if self.nan is None else f"WHEN {scaled} = {self.nan} THEN NULL "
        return (
            f"CASE {nan}WHEN abs({scaled}) > {_LARGEST_DOWN}"
            f" THEN sign({scaled}) * {self.infinity} ELSE {finite} END"
        )

    def sum_or_infinity(self, value: str) -> str:
        """The aggregate sum of `value` in SQL, infinite past the largest double."""
        scaled = f"sum({value} * {self.down})"
        return self._past_largest(scaled, f"{scaled} * {self.up}")

    def mean_or_infinity(self, value: str, count: str) -> str:
        """The aggregate mean of `value` over `count` in SQL, as sum / count.

        Infinite when the sum is past the largest double (as the rollups' infinite totals
        give), else the scaled sum over `count`.
        """
        scaled = f"sum({value} * {self.down})"
        return self._past_largest(scaled, f"{scaled} / {count} * {self.up}")

    def plus_or_infinity(self, left: str, right: str) -> str:
        """`left + right` in SQL for two float8 values, infinite past the largest double."""
        scaled = f"({left} * {self.down} + {right} * {self.down})"
        return self._past_largest(scaled, f"{left} + {right}")


POSTGRES_FLOATS: Final = FloatSql(
    down="5.421010862427522e-20::float8",
    up="18446744073709551616::float8",
    infinity="'Infinity'::float8",
    nan="'NaN'::float8",  # equal to itself, and above every other float8, in PostgreSQL
)
SQLITE_FLOATS: Final = FloatSql(
    down="5.421010862427522e-20", up="18446744073709551616.0", infinity="9e999", nan=None
)
