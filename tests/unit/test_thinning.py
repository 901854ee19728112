"""Thinning a full outbox: min/max/last per point per minute, alarms and gaps kept, losses named."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given
from hypothesis import strategies as st

from edge_agent.core.thinning import EvictedBlock, drop, readings_of, thin, thin_readings
from specs.records import (
    AlarmEvent,
    GapReason,
    GapRecord,
    Reading,
    Record,
    iso_time,
    parse_iso_time,
)
from tests.support.records import alarm_record, reading_at

T0 = 1_700_000_040.0  # a minute boundary
NOW = T0 + 3600


def test_a_minute_of_one_point_keeps_its_min_max_and_last() -> None:
    values = [5.0, 1.0, 9.0, 4.0, 7.0, 3.0]
    readings = [reading_at(T0 + i * 10, v, point="P1") for i, v in enumerate(values)]
    kept = sorted(thin_readings(readings))
    assert [readings[i].value for i in kept] == [1.0, 9.0, 3.0]


def test_each_point_and_each_minute_is_thinned_on_its_own() -> None:
    readings = [
        reading_at(T0 + minute * 60 + second, float(second + minute), point=point)
        for point in ("P1", "P2")
        for minute in range(2)
        for second in range(0, 60, 5)
    ]
    kept = thin_readings(readings)
    # two points x two minutes x (min, max, last) where max and last coincide: 2 each
    assert len(kept) == 8


def test_bad_readings_without_value_survive_only_as_the_last_of_their_minute() -> None:
    readings = [
        reading_at(T0, None, point="P1"),
        reading_at(T0 + 10, 2.0, point="P1"),
        reading_at(T0 + 20, None, point="P1"),
    ]
    kept = sorted(thin_readings(readings))
    assert kept == [1, 2]


def test_thin_keeps_alarm_events_and_gap_records_and_names_the_loss() -> None:
    earlier_gap = GapRecord(iso_time(T0), GapReason.DISK_FULL, 3)
    alarm = alarm_record("a-1", AlarmEvent.RAISE, T0 + 30, point="P1", value=9.0)
    first = EvictedBlock(
        "e1",
        4,
        (*(reading_at(T0 + s, float(s), point="P1") for s in range(0, 60, 6)), alarm, earlier_gap),
    )
    second = EvictedBlock(
        "e1", 5, tuple(reading_at(T0 + 60 + s, 1.0, point="P1") for s in range(0, 60, 6))
    )
    replacement = thin([first, second], now=NOW)
    gap = replacement.records[0]
    assert isinstance(gap, GapRecord)
    assert gap.reason is GapReason.THINNED
    assert (gap.epoch, gap.from_seq, gap.to_seq) == ("e1", 4, 5)
    assert gap.lost == replacement.dropped == 20 - replacement.kept_readings
    assert gap.t_from is not None
    assert gap.t_to is not None
    assert parse_iso_time(gap.t_from) >= T0
    assert parse_iso_time(gap.t_to) < T0 + 120
    assert alarm in replacement.records
    assert earlier_gap in replacement.records


def test_a_gap_record_never_spans_a_block_that_did_not_give_way() -> None:
    blocks = [
        EvictedBlock(
            "e1", seq, tuple(reading_at(T0 + seq * 60 + s, float(s), point="P1") for s in range(9))
        )
        for seq in (3, 4, 7)
    ]
    replacement = thin(blocks, now=NOW)
    gaps = [r for r in replacement.records if isinstance(r, GapRecord)]
    assert [(g.from_seq, g.to_seq) for g in gaps] == [(3, 4), (7, 7)]
    assert [g.lost for g in gaps] == [14, 7]  # each block keeps its min and its max (= last)


def test_drop_keeps_only_alarms_and_gaps_with_an_outbox_full_gap_per_epoch() -> None:
    alarm = alarm_record("a-1", AlarmEvent.RAISE, T0 + 1, point="P1", value=9.0)
    blocks = [
        EvictedBlock("e1", 9, (reading_at(T0, 1.0, point="P1"), alarm)),
        EvictedBlock(
            "e2", 1, (reading_at(T0 + 70, 2.0, point="P1"), reading_at(T0 + 75, 3.0, point="P2"))
        ),
    ]
    replacement = drop(blocks, now=NOW)
    gaps = [r for r in replacement.records if isinstance(r, GapRecord)]
    assert [(g.reason, g.epoch, g.from_seq, g.to_seq, g.lost) for g in gaps] == [
        (GapReason.OUTBOX_FULL, "e1", 9, 9, 1),
        (GapReason.OUTBOX_FULL, "e2", 1, 1, 2),
    ]
    assert [r for r in replacement.records if not isinstance(r, GapRecord)] == [alarm]
    assert replacement.dropped == 3


readings_strategy = st.lists(
    st.tuples(
        st.sampled_from(["P1", "P2", "P3"]),
        st.integers(min_value=0, max_value=600),
        st.one_of(st.none(), st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)),
    ),
    max_size=200,
)


@given(readings_strategy)
def test_every_bucket_keeps_its_extremes_and_its_last(
    raw: list[tuple[str, int, float | None]],
) -> None:
    readings = [reading_at(T0 + s, v, point=p) for p, s, v in raw]
    kept = thin_readings(readings)
    buckets: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, r in enumerate(readings):
        buckets[(r.point, int(parse_iso_time(r.t) // 60))].append(i)
    for members in buckets.values():
        in_bucket = [i for i in members if i in kept]
        assert 1 <= len(in_bucket) <= 3
        valued = [v for i in members if (v := readings[i].value) is not None]
        kept_values = [readings[i].value for i in in_bucket]
        if valued:
            assert min(valued) in kept_values
            assert max(valued) in kept_values
        latest = max(parse_iso_time(readings[i].t) for i in members)
        assert any(parse_iso_time(readings[i].t) == latest for i in in_bucket)


@given(readings_strategy)
def test_nothing_is_lost_without_being_counted(raw: list[tuple[str, int, float | None]]) -> None:
    records: list[Record] = [reading_at(T0 + s, v, point=p) for p, s, v in raw]
    blocks = [EvictedBlock("e", i + 1, tuple(records[i::4])) for i in range(4)]
    replacement = thin(blocks, now=NOW)
    kept = [r for r in replacement.records if isinstance(r, Reading)]
    gaps = [r for r in replacement.records if isinstance(r, GapRecord)]
    assert len(kept) + sum(g.lost or 0 for g in gaps) == len(readings_of(blocks))
    assert set(kept) <= set(records)
