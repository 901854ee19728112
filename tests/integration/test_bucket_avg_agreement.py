"""`every=` from the per-minute rollups and from the raw readings: what agrees, and how closely.

Found by the hostile collector run: with `from` on a whole minute (the rollups answer) and
1 ms earlier (the raw readings answer), 34 of 40 buckets of a tank level showed another `avg`
in the last digits (124.46173333333331 vs 124.4617333333334; exact 124.46173333333334), and
readings that cancel (0.1, 0.2, 0.3, then 1e16, 1.0, -1e16 in a later batch) averaged 0.1 vs
0.0, where the docs promised "exactly the buckets the readings would". Both paths add the same
values as floats in another order (per minute and batch, then the minutes; or all at once), so
`avg` can only agree to within the rounding of a float sum: (count + 1) x 2^-53 x the mean of
the values' magnitudes from the exact mean (`_agreement`; see
collector.storage.buckets.rollups_answer). Everything else (count, min, max, last, which
buckets) agrees exactly. Checked on both backends, readings spread over several batches so
that the rollups fold minutes already held.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from collector.readmodel import EVERYTHING, BucketGrid, BucketRow, ReadingFilter
from collector.storage import open_storage
from collector.storage.base import Storage
from collector.storage.buckets import rollups_answer
from specs.records import Quality, Reading, iso_time
from tests.support.collector_api import NANCHANG, store_blocks
from tests.support.collector_client import BASE_TIME
from tests.support.collector_env import register

MINUTE = (int(BASE_TIME) // 60) * 60 + 600
GRID = BucketGrid(120, 0)
SPAN = 360  # seconds of readings: three buckets, six minutes

# Realistic magnitudes: levels, pressures, flows, counters; both signs; float32 values too.
_VALUE = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.floats(0, 500, width=32),
    st.none(),
)
_READING = st.tuples(st.integers(0, SPAN * 10 - 1), _VALUE, st.sampled_from(list(Quality)))
_BATCHES = st.lists(st.lists(_READING, min_size=1, max_size=40), min_size=1, max_size=4)
Batches = list[list[tuple[int, float | None, Quality]]]
CANCELLING: Batches = [
    [(50, 0.1, Quality.GOOD), (60, 0.2, Quality.GOOD), (70, 0.3, Quality.GOOD)],
    [(80, 1e16, Quality.GOOD), (90, 1.0, Quality.GOOD), (100, -1e16, Quality.GOOD)],
]


def _agreement(values: list[float]) -> float:
    """How far a float mean of `values` may lie from their exact mean, whatever the order.

    Any order of n - 1 additions errs by at most (n - 1) u sum|x| (u = 2^-53; one addition
    more joins the sum of the values below 2^-958, collector.storage.float_sums), the division
    by n one rounding more (u |mean|), and the clamp to [min, max] only comes closer.
    """
    magnitude = math.fsum(abs(v) for v in values) / len(values)
    return (len(values) + 1) * 2.0**-53 * magnitude * (1 + 1e-9)


class _Run:
    """One storage for every example; each example a point of its own, its blocks' seqs next."""

    def __init__(self, loop: asyncio.AbstractEventLoop, storage: Storage) -> None:
        self.loop, self.storage = loop, storage
        self._points = itertools.count(1)
        self._seqs = itertools.count(1)

    def point(self) -> str:
        return f"T{next(self._points):03d}-LT-01"

    def seq(self) -> int:
        return next(self._seqs)


@pytest.fixture
def run(storage_url: str) -> Iterator[_Run]:
    loop = asyncio.new_event_loop()
    stack = contextlib.AsyncExitStack()
    storage = loop.run_until_complete(stack.enter_async_context(open_storage(storage_url)))
    loop.run_until_complete(register(storage, NANCHANG))
    yield _Run(loop, storage)
    loop.run_until_complete(stack.aclose())
    loop.close()


async def _buckets(storage: Storage, point: str, t_from: float) -> list[BucketRow]:
    where = ReadingFilter(point=point, t_from=t_from, t_to=MINUTE + 3600)
    page = await storage.buckets(EVERYTHING, where, GRID, after=None, limit=100)
    assert not page.more
    return list(page.items)


def _stored(run: _Run, batches: Batches) -> tuple[str, dict[float, float]]:
    """Store each batch as one block in one ingest; the readings' values by time, once each."""
    point, values = run.point(), {}
    seen: set[int] = set()
    for batch in batches:
        readings = []
        for tenths, value, quality in batch:
            if tenths in seen:
                continue  # one reading per (point, t)
            seen.add(tenths)
            t = MINUTE + tenths / 10
            readings.append(Reading(point, "WHP-LT", iso_time(t), value, "m", quality))
            if value is not None and quality is not Quality.BAD:
                values[t] = value
        if readings:
            run.loop.run_until_complete(store_blocks(run.storage, NANCHANG, {run.seq(): readings}))
    return point, values


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=_BATCHES)
@example(batches=CANCELLING)
def test_rollup_and_raw_buckets_agree_but_for_the_rounding_of_avg(
    run: _Run, batches: Batches
) -> None:
    point, values = _stored(run, batches)
    assert rollups_answer(GRID, ReadingFilter(t_from=MINUTE, t_to=MINUTE + 3600))
    rolled = run.loop.run_until_complete(_buckets(run.storage, point, MINUTE))
    raw = run.loop.run_until_complete(_buckets(run.storage, point, MINUTE - 0.001))
    assert [r.t for r in rolled] == [r.t for r in raw]
    for one, other in zip(rolled, raw, strict=True):
        # count, min, max, last, quota and unit: exactly the same.
        assert (one.count, one.min, one.max, one.last) == (
            other.count,
            other.min,
            other.max,
            other.last,
        )
        assert (one.quota, one.unit) == (other.quota, other.unit)
        held = [v for t, v in values.items() if one.t <= t < one.t + GRID.width]
        assert one.count == len(held)
        if not held:
            assert (one.avg, other.avg) == (None, None)
            continue
        exact = math.fsum(held) / len(held)
        bound = _agreement(held)
        for avg in (one.avg, other.avg):
            assert avg is not None
            assert abs(avg - exact) <= bound, (avg, exact, bound, held)


def test_readings_that_cancel_average_apart_within_the_bound(run: _Run) -> None:
    """The hostile run's case: the rollups kept 0.6 of the first batch beside 1e16 + 1 - 1e16."""
    point, values = _stored(run, CANCELLING)
    [rolled] = run.loop.run_until_complete(_buckets(run.storage, point, MINUTE))
    [raw] = run.loop.run_until_complete(_buckets(run.storage, point, MINUTE - 0.001))
    # Which digits come out depends on the order of the sums, which neither backend promises
    # (seen: 0.10000000000000002 from the rollups, 0.0 from the readings): the bound alone.
    held = list(values.values())
    assert (rolled.count, raw.count) == (len(held), len(held)) == (6, 6)
    exact = math.fsum(held) / len(held)
    for avg in (rolled.avg, raw.avg):
        assert avg is not None
        assert abs(avg - exact) <= _agreement(held), (avg, exact)
