"""Per-minute rollups: folding batch by batch and merging equals aggregating everything once."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from collector.model import BlockEntries, IncomingBlock, ReadingEntry
from collector.storage.rollups import MinuteRollup, merged, minute_of, minute_rollups
from specs.block import decode_block
from tests.support.collector_client import BASE_TIME, sim_gateway

GW = sim_gateway(1)
PAYLOAD = GW.block(1)
BLOCK = decode_block(PAYLOAD)

readings = st.builds(
    lambda point, second, value, quality, unit: ReadingEntry(
        0, point, "WHP-LT", BASE_TIME + second, value, unit, quality, ()
    ),
    st.sampled_from(["P-1", "P-2"]),
    st.integers(0, 179).map(float),
    st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),
    st.sampled_from(["good", "uncertain", "bad"]),
    st.sampled_from(["m", "mm"]),
)


def _block(entries: list[ReadingEntry]) -> IncomingBlock:
    return IncomingBlock(
        GW.topics.block, BLOCK, GW.key.sign(PAYLOAD), BASE_TIME, BlockEntries(tuple(entries))
    )


Key = tuple[str, float, str, str]


def _key(r: ReadingEntry) -> Key:
    """A rollup's key: point, minute, quota and unit (one row never mixes two units)."""
    return (r.point, minute_of(r.t), r.quota, r.unit)


def _expected(rows: list[ReadingEntry]) -> dict[Key, tuple[object, ...]]:
    """By definition: counted values are those not bad and not null; newest decides the rest."""
    found: dict[Key, tuple[object, ...]] = {}
    for key in {_key(r) for r in rows}:
        mine = [r for r in rows if _key(r) == key]
        counted = [r for r in mine if r.quality != "bad" and r.value is not None]
        newest = max(mine, key=lambda r: r.t)
        last = max(counted, key=lambda r: r.t) if counted else None
        values = [r.value for r in counted if r.value is not None]
        found[key] = (
            len(values),
            min(values, default=None),
            max(values, default=None),
            newest.t,
            None if last is None else last.t,
        )
    return found


def _shape(rollup: MinuteRollup) -> tuple[object, ...]:
    return (rollup.n, rollup.lo, rollup.hi, rollup.newest_t, rollup.last_t)


# One reading per (point, t), as the collector stores them.
unique_readings = st.lists(readings, max_size=30).map(
    lambda rs: list({(r.point, r.t): r for r in rs}.values())
)


@given(unique_readings, st.integers(1, 5))
def test_batches_folded_and_merged_equal_one_aggregate(
    rows: list[ReadingEntry], batches: int
) -> None:
    held: dict[Key, MinuteRollup] = {}
    for i in range(batches):
        for rollup in minute_rollups([_block(rows[i::batches])]):
            key = (rollup.point, rollup.minute, rollup.quota, rollup.unit)
            held[key] = rollup if key not in held else merged(held[key], rollup)
    assert {key: _shape(r) for key, r in held.items()} == _expected(rows)
    for key, rollup in held.items():
        counted = [
            r.value for r in rows if _key(r) == key and r.quality != "bad" and r.value is not None
        ]
        if counted:
            assert rollup.total is not None
            assert math.isclose(rollup.total, math.fsum(counted), rel_tol=1e-9, abs_tol=1e-6)
            last = max(
                (r for r in rows if _key(r) == key
                 and r.quality != "bad" and r.value is not None),
                key=lambda r: r.t,
            )  # fmt: skip
            assert rollup.last_value == last.value
        else:
            assert (rollup.total, rollup.last_value) == (None, None)


def test_a_total_past_the_largest_double_both_ways_stays_not_a_number() -> None:
    """+inf and -inf totals of one minute merge to None (NaN, which SQLite cannot store), and
    a later total leaves it None: the storages' fold does the same on both backends."""
    huge = 1.7e308

    def rollup(t: float, *values: float) -> MinuteRollup:
        entries = [
            ReadingEntry(i, "P-1", "WHP-LT", BASE_TIME + t + i, v, "m", "uncertain", ())
            for i, v in enumerate(values)
        ]
        [found] = minute_rollups([_block(entries)])
        return found

    up, down, later = rollup(0, huge, huge), rollup(2, -huge, -huge), rollup(4, 1.0)
    assert (up.total, down.total) == (math.inf, -math.inf)
    poisoned = merged(up, down)
    assert (poisoned.n, poisoned.total) == (4, None)
    assert (merged(poisoned, later).n, merged(poisoned, later).total) == (5, None)
    assert merged(later, poisoned).total is None
