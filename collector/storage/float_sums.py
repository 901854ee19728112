"""Sums and means of float8 in SQL that both backends compute alike.

Infinite past the largest double, as Python's are; NULL where IEEE gives NaN.

PostgreSQL's float8 addition raises 'value out of range: overflow' where IEEE gives infinity:
readings of 1.7e308 (an instrument's garbage, stored out_of_range) failed the ingest batch
that folded their minute, the buckets over them and the first fill of the rollups. These
expressions add at 2^-64 scale, which cannot overflow and is exact for every double above
2^-958, and give +-Infinity exactly where the unscaled sum would have overflowed. SQLite
runs the same scaled sums: its own avg() adds unscaled, so a bucket of +1.7e308, +1.7e308,
-1.7e308 was infinite there and 5.7e307 on PostgreSQL.

Values below 2^-958 would go subnormal at that scale and lose digits (three readings of
1.234e-300 averaged 1.2340224e-300, above their max): they are summed unscaled beside the
scaled sum (their sum cannot overflow), and the two added back at full scale. A mean is
then clamped to the [min, max] of what it averages: rounded sums can put it a last place
outside (three readings of 0.1 average 0.10000000000000002), and the mean of identical
values is that value. An infinite mean (the sum past the largest double) stays infinite.

The sums are of doubles in whatever order the rows come: the rollups' per-minute totals (summed
per ingest batch, then folded) and the raw readings of the same bucket add the same values in
another order, so their means agree to within the rounding of a float sum, not to the last
digit (collector.storage.buckets.rollups_answer says how closely).

Infinities of both signs (rollup totals of garbage of both signs) sum to NaN. SQLite stores
and returns NaN as NULL and PostgreSQL keeps it; so both say NULL: JSON has no NaN either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

_LARGEST_DOWN: Final = "9.745314011399998e288"  # the largest double at 2^-64
_SCALES_EXACTLY: Final = "4.1045368012983762e-289"  # 2^-958: at 2^-64 still a normal double


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

    def _scaled(self, value: str) -> str:
        """`value` at 2^-64, 0 below 2^-958 (PostgreSQL raises on a product that underflows)."""
        return f"CASE WHEN abs({value}) < {_SCALES_EXACTLY} THEN 0.0 ELSE {value} * {self.down} END"

    def _full_sum(self, value: str) -> str:
        """The sum of `value` at full scale, for when its scaled sum is not past the largest.

        Values of at least 2^-958 add at 2^-64 (exactly as unscaled, but never overflowing),
        smaller ones unscaled (no sum of them can overflow, and none goes subnormal).
        """
        large = f"sum({self._scaled(value)})"
        small = f"sum(CASE WHEN abs({value}) < {_SCALES_EXACTLY} THEN {value} ELSE 0.0 END)"
        return f"({large} * {self.up} + {small})"

    def sum_or_infinity(self, value: str) -> str:
        """The aggregate sum of `value` in SQL, infinite past the largest double."""
        return self._past_largest(f"sum({self._scaled(value)})", self._full_sum(value))

    def mean_or_infinity(self, value: str, count: str, lo: str, hi: str) -> str:
        """The aggregate mean of `value` over `count` in SQL, as sum / count.

        Infinite when the sum is past the largest double (as the rollups' infinite totals
        give), else the full sum over `count`, clamped to [`lo`, `hi`], the SQL of the
        least and greatest value it averages.
        """
        mean = f"{self._full_sum(value)} / {count}"
        within = f"CASE WHEN {mean} < {lo} THEN {lo} WHEN {mean} > {hi} THEN {hi} ELSE {mean} END"
        return self._past_largest(f"sum({self._scaled(value)})", within)

    def plus_or_infinity(self, left: str, right: str) -> str:
        """`left + right` in SQL for two float8 values, infinite past the largest double."""
        scaled = f"({self._scaled(left)} + {self._scaled(right)})"
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
