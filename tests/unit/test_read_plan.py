"""Read planner: fewest requests, protocol limits, gaps, and exact coverage."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.base import DecodeError
from drivers.modbus.codec import DataType, Order, Table, is_bit_table, register_count
from drivers.modbus.plan import (
    MAX_READ_BITS,
    MAX_READ_REGISTERS,
    UNLIMITED_GAP,
    ReadRequest,
    RegisterPoint,
    plan_reads,
    slice_values,
    transaction_lower_bound,
)

H = Table.HOLDING


def words(
    starts: list[int], dtype: DataType = DataType.UINT16, table: Table = H
) -> list[RegisterPoint]:
    return [RegisterPoint(f"p{s}", table, s, dtype) for s in starts]


def spans(plan: tuple[ReadRequest, ...]) -> list[tuple[Table, int, int]]:
    return [(r.table, r.start, r.count) for r in plan]


def test_300_contiguous_registers_take_3_requests() -> None:
    plan = plan_reads(words(list(range(300))))
    assert spans(plan) == [(H, 0, 125), (H, 125, 125), (H, 250, 50)]


def test_float32_never_straddles_the_125_limit() -> None:
    plan = plan_reads(words(list(range(0, 300, 2)), DataType.FLOAT32))
    # 125 is odd: a request takes 62 floats (124 registers) rather than split the 63rd.
    assert spans(plan) == [(H, 0, 124), (H, 124, 124), (H, 248, 52)]


def test_exactly_125_registers_is_one_request() -> None:
    assert spans(plan_reads(words([0, 124]), max_gap=200)) == [(H, 0, 125)]
    assert spans(plan_reads(words([0, 125]), max_gap=200)) == [(H, 0, 1), (H, 125, 1)]


def test_gap_up_to_max_gap_is_read_through() -> None:
    assert spans(plan_reads(words([0, 11]))) == [(H, 0, 12)]  # 10 unused registers
    assert spans(plan_reads(words([0, 12]))) == [(H, 0, 1), (H, 12, 1)]  # 11 unused
    assert spans(plan_reads(words([0, 1, 3]), max_gap=0)) == [(H, 0, 2), (H, 3, 1)]
    assert spans(plan_reads(words([0, 50]), max_gap=49)) == [(H, 0, 51)]


def test_bit_tables_allow_2000_bits() -> None:
    coils = words(list(range(4001)), DataType.BOOL, Table.COIL)
    assert spans(plan_reads(coils)) == [
        (Table.COIL, 0, 2000),
        (Table.COIL, 2000, 2000),
        (Table.COIL, 4000, 1),
    ]


def test_tables_are_planned_separately_in_a_fixed_order() -> None:
    points = [
        RegisterPoint("d", Table.DISCRETE, 0, DataType.BOOL),
        RegisterPoint("i", Table.INPUT, 0, DataType.FLOAT32),
        RegisterPoint("c", Table.COIL, 0, DataType.BOOL),
        RegisterPoint("h", Table.HOLDING, 1, DataType.INT32),
    ]
    assert spans(plan_reads(points)) == [
        (Table.HOLDING, 1, 2),
        (Table.INPUT, 0, 2),
        (Table.COIL, 0, 1),
        (Table.DISCRETE, 0, 1),
    ]


def test_points_sharing_a_register_share_a_request() -> None:
    points = [RegisterPoint(f"bit{b}", H, 7, DataType.BOOL, bit=b) for b in (15, 0, 3)] + [
        RegisterPoint("word", H, 7, DataType.UINT16)
    ]
    (request,) = plan_reads(points)
    assert (request.start, request.count, len(request.points)) == (7, 1, 4)
    assert slice_values(request, [0x8009]) == {
        "bit0": (0x8009,),
        "bit3": (0x8009,),
        "bit15": (0x8009,),
        "word": (0x8009,),
    }


def test_empty_plan() -> None:
    assert plan_reads([]) == ()


def test_rejects_duplicate_keys_and_negative_gap() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        plan_reads([*words([0]), *words([0])])
    with pytest.raises(ValueError, match="max_gap"):
        plan_reads(words([0]), max_gap=-1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"table": Table.COIL, "start": 0, "dtype": DataType.UINT16},
        {"table": Table.COIL, "start": 0, "dtype": DataType.BOOL, "bit": 0},
        {"table": H, "start": 0, "dtype": DataType.UINT16, "bit": 0},
        {"table": H, "start": 0, "dtype": DataType.BOOL, "bit": 16},
        {"table": H, "start": -1, "dtype": DataType.UINT16},
        {"table": H, "start": 65535, "dtype": DataType.FLOAT32},
    ],
)
def test_point_rejects_impossible_addresses(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"."):
        RegisterPoint("x", **kwargs)  # type: ignore[arg-type]


def test_point_at_the_top_of_the_address_space() -> None:
    point = RegisterPoint("top", H, 65534, DataType.FLOAT32, Order.LITTLE, Order.LITTLE)
    assert (point.count, point.end) == (2, 65536)


def test_slice_values_cuts_each_point() -> None:
    points = [
        RegisterPoint("a", H, 10, DataType.UINT16),
        RegisterPoint("b", H, 12, DataType.FLOAT32),
        RegisterPoint("c", H, 14, DataType.FLOAT64),
    ]
    (request,) = plan_reads(points)
    assert (request.start, request.count) == (10, 8)
    response = [100, 101, 102, 103, 104, 105, 106, 107]
    assert slice_values(request, response) == {
        "a": (100,),
        "b": (102, 103),
        "c": (104, 105, 106, 107),
    }
    assert response == [100, 101, 102, 103, 104, 105, 106, 107]


def test_slice_values_ignores_coil_padding_and_rejects_short_replies() -> None:
    (request,) = plan_reads(words([0, 2], DataType.BOOL, Table.COIL))
    bits = [True, False, False, True, True, False, False, False]  # padded to a byte
    assert slice_values(request, bits) == {"p0": (1,), "p2": (0,)}
    (short,) = plan_reads(words([0, 1, 2]))
    with pytest.raises(DecodeError):
        slice_values(short, [1, 2])


@st.composite
def point_sets(draw: st.DrawFn) -> list[RegisterPoint]:
    points: list[RegisterPoint] = []
    for i in range(draw(st.integers(0, 60))):
        table = draw(st.sampled_from(list(Table)))
        if is_bit_table(table):
            dtype, bit = DataType.BOOL, None
        else:
            dtype = draw(st.sampled_from(list(DataType)))
            bit = draw(st.integers(0, 15)) if dtype is DataType.BOOL else None
        start = draw(st.integers(0, 600 if not is_bit_table(table) else 5000))
        points.append(RegisterPoint(f"k{i}", table, start, dtype, bit=bit))
    return points


@given(points=point_sets(), max_gap=st.integers(0, 40))
def test_every_point_is_covered_exactly_once_within_limits(
    points: list[RegisterPoint], max_gap: int
) -> None:
    plan = plan_reads(points, max_gap=max_gap)
    planned = [p for r in plan for p in r.points]
    assert sorted(p.key for p in planned) == sorted(p.key for p in points)
    for request in plan:
        limit = MAX_READ_BITS if is_bit_table(request.table) else MAX_READ_REGISTERS
        assert 1 <= request.count <= limit
        assert request.points
        for point in request.points:
            assert point.table is request.table
            assert request.start <= point.start
            assert point.end <= request.start + request.count
        # The request is exactly the hull of its points.
        assert request.start == min(p.start for p in request.points)
        assert request.start + request.count == max(p.end for p in request.points)


def _fewest(points: list[RegisterPoint], max_gap: int) -> int:
    """Count requests by dynamic programming over runs of address-sorted points."""
    total = 0
    for table in Table:
        row = sorted((p for p in points if p.table is table), key=lambda p: p.start)
        limit = MAX_READ_BITS if is_bit_table(table) else MAX_READ_REGISTERS
        best = [0] + [len(row) + 1] * len(row)
        for i in range(1, len(row) + 1):
            for j in range(i):
                run = row[j:i]
                gaps_ok = all(b.start - a.end <= max_gap for a, b in itertools.pairwise(run))
                if gaps_ok and run[-1].end - run[0].start <= limit:
                    best[i] = min(best[i], best[j] + 1)
        total += best[len(row)]
    return total


@st.composite
def disjoint_points(draw: st.DrawFn) -> list[RegisterPoint]:
    points: list[RegisterPoint] = []
    address = 0
    for i in range(draw(st.integers(0, 25))):
        dtype = draw(st.sampled_from([t for t in DataType if t is not DataType.BOOL]))
        address += draw(st.integers(0, 30))
        points.append(RegisterPoint(f"k{i}", H, address, dtype))
        address += register_count(dtype)
    return points


@given(points=disjoint_points(), max_gap=st.integers(0, 30))
def test_greedy_plan_is_as_short_as_any_plan(points: list[RegisterPoint], max_gap: int) -> None:
    assert len(plan_reads(points, max_gap=max_gap)) == _fewest(points, max_gap)


@given(points=point_sets())
def test_unlimited_gap_plan_reaches_the_lower_bound(points: list[RegisterPoint]) -> None:
    assert len(plan_reads(points, max_gap=UNLIMITED_GAP)) == transaction_lower_bound(points)


@given(points=point_sets(), max_gap=st.integers(0, 40))
def test_no_plan_beats_the_lower_bound(points: list[RegisterPoint], max_gap: int) -> None:
    assert len(plan_reads(points, max_gap=max_gap)) >= transaction_lower_bound(points)
