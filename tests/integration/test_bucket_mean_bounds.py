"""A bucket's avg lies within its [min, max], and the avg of identical values is that value.

The sums of collector.storage.float_sums added at 2^-64 scale; below ~2^-958 that goes
subnormal and loses digits: three readings of 1.234e-300 averaged 1.2340224e-300, above
their max. Rounded sums also put a mean a last place outside: three of 0.1 averaged
0.10000000000000002. Checked end to end (the API, raw and rollup paths, both backends) and
as a property of the SQL both backends run, over floats with subnormals and huge values.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.storage import open_storage
from collector.storage.float_sums import POSTGRES_FLOATS, SQLITE_FLOATS, FloatSql
from collector.storage.rollups import rollup_mean
from specs.records import iso_time
from tests.support.collector_api import NANCHANG, auth, level, serve, store_blocks
from tests.support.collector_client import BASE_TIME
from tests.support.collector_env import register

MINUTE = BASE_TIME - BASE_TIME % 60


@pytest.mark.parametrize("value", [1.234e-300, 0.1, 5e-324, 1e300])
async def test_identical_readings_average_to_their_value(storage_url: str, value: float) -> None:
    async with open_storage(storage_url) as storage:
        await register(storage, NANCHANG)
        await store_blocks(storage, NANCHANG, [[level(MINUTE + 1 + i, value) for i in range(3)]])
        async with serve(storage) as http:
            shown = []
            # Whole minutes: from the rollups; a millisecond later: from the raw readings.
            for start in (MINUTE, MINUTE + 0.001):
                params = {"every": "1m", "from": iso_time(start), "to": iso_time(MINUTE + 60)}
                response = await http.get("/v1/readings", params=params, headers=auth())
                [bucket] = response.json()["items"]
                shown.append((bucket["min"], bucket["max"], bucket["avg"], bucket["count"]))
    assert shown == [(value, value, value, 3)] * 2


_VALUES = st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=8)


def _check(values: list[float], found: tuple[float | None, float, float]) -> None:
    """avg is null only when the sum goes past the largest double, else within [min, max]."""
    avg, lo, hi = found
    assert (lo, hi) == (min(values), max(values))
    if avg is None or abs(avg) == float("inf"):
        assert abs(sum(v * 2.0**-64 for v in values)) > 9.745314011399998e288
        return
    assert lo <= avg <= hi
    if lo == hi:
        assert avg == lo


def _values(placeholders: str) -> str:
    """The values as a column `v` (SQLite names no VALUES column but column1)."""
    return f"SELECT column1 AS v FROM (VALUES {placeholders}) AS x"


def _raw_sql(placeholders: str, sums: FloatSql) -> str:
    mean = sums.mean_or_infinity("v", "nullif(count(v), 0)", "min(v)", "max(v)")
    return f"SELECT {mean}, min(v), max(v) FROM ({_values(placeholders)}) AS s"


def _rollup_sql(placeholders: str, sums: FloatSql) -> str:
    # One rollup minute per value: n = 1, lo = hi = total = the value.
    return (
        f"SELECT {rollup_mean(sums)}, min(m.lo), max(m.hi) FROM (SELECT v AS lo, v AS hi,"
        f" v AS total, 1 AS n FROM ({_values(placeholders)}) AS s) AS m"
    )


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(_VALUES)
def test_sqlite_means_lie_within_their_values(values: list[float]) -> None:
    db = sqlite3.connect(":memory:")
    holes = ", ".join("(?)" for _ in values)
    for sql in (_raw_sql(holes, SQLITE_FLOATS), _rollup_sql(holes, SQLITE_FLOATS)):
        _check(values, db.execute(sql, values).fetchone())
    db.close()


@pytest.fixture
def postgres(postgres_url: str) -> Iterator[tuple[asyncio.AbstractEventLoop, asyncpg.Connection]]:
    loop = asyncio.new_event_loop()
    connection = loop.run_until_complete(asyncpg.connect(postgres_url))
    yield loop, connection
    loop.run_until_complete(connection.close())
    loop.close()


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=_VALUES)
def test_postgres_means_lie_within_their_values(
    postgres: tuple[asyncio.AbstractEventLoop, asyncpg.Connection], values: list[float]
) -> None:
    loop, connection = postgres
    holes = ", ".join(f"(${i + 1}::float8)" for i in range(len(values)))
    for sql in (_raw_sql(holes, POSTGRES_FLOATS), _rollup_sql(holes, POSTGRES_FLOATS)):
        row = loop.run_until_complete(connection.fetchrow(sql, *values))
        assert row is not None
        _check(values, (row[0], row[1], row[2]))
