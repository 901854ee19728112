"""Pure collector normalization: units, unknown quota/unit, plausible range, alarm pairing, meta."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.ingest.core import Inbound, plan_batch
from collector.ingest.judge import judge_block, judge_meta
from collector.ingest.normalize import OUT_OF_RANGE, block_entries, meta_point
from collector.model import (
    AlarmEntry,
    AuditEntry,
    GapEntry,
    IncomingBlock,
    IncomingMeta,
    KeyGrant,
    Reason,
)
from collector.readmodel import AlarmState
from collector.storage.alarms import merge_alarm
from specs.block import decode_block
from specs.catalogue import Catalogue, UnitConversion
from specs.meta import PointMeta
from specs.records import AlarmEvent, GapReason, Quality, Reading, Record, iso_time
from tests.support.collector_client import (
    BASE_TIME,
    catalogue_with_coal,
    foreign_key,
    gap_record,
    key_grants,
    sim_gateway,
)
from tests.support.records import alarm_record

GW = sim_gateway(1)
OTHER = sim_gateway(2)
CATALOGUE = catalogue_with_coal()


def _reading(
    value: float | None,
    unit: str = "m",
    quota: str = "WHP-LT",
    *,
    quality: Quality = Quality.GOOD,
    flags: tuple[str, ...] = (),
    point: str = "T001-LT-01",
) -> Reading:
    return Reading(point, quota, iso_time(BASE_TIME), value, unit, quality, flags)


def _grants() -> dict[str, KeyGrant]:
    return key_grants(GW, OTHER)


def _entries(*records: Record, seq: int = 7) -> IncomingBlock:
    payload = GW.block(seq, records=list(records))
    verdict = judge_block(
        Inbound(GW.topics.block, payload, tuple(GW.sign(payload)), BASE_TIME), _grants(), CATALOGUE
    )
    assert isinstance(verdict, IncomingBlock)
    return verdict


# --- readings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "quota", "stored", "canonical"),
    [
        (1234.0, "mm", "WHP-LT", 1.234, "m"),
        (250.0, "cm", "WHP-LT", 2.5, "m"),
        (7.5, "m", "WHP-LT", 7.5, "m"),
        (300.0, "K", "WHP-TT", 26.85, "℃"),
        (150.0, "kPa", "WHP-PT", 0.15, "MPa"),
    ],
)
def test_values_are_stored_in_the_canonical_unit(
    value: float, unit: str, quota: str, stored: float, canonical: str
) -> None:
    (entry,) = _entries(_reading(value, unit, quota)).entries.readings
    assert entry.value == pytest.approx(stored)
    assert (entry.unit, entry.quality, entry.flags) == (canonical, "good", ())


def test_unknown_quota_and_unit_reject_only_their_record_with_an_audit_row() -> None:
    incoming = _entries(
        _reading(1.0),
        _reading(1.0, quota="WHP-NOPE", point="X-1"),
        _reading(1.0, unit="furlong", point="X-2"),
        _reading(2.0, point="T001-LT-02"),
    )
    assert [r.idx for r in incoming.entries.readings] == [0, 3]
    quota, unit = incoming.entries.rejected
    assert (quota.reason, unit.reason) == (Reason.UNKNOWN_QUOTA, Reason.UNKNOWN_UNIT)
    where = f"gateway {GW.gateway} epoch epoch-1 seq 7 record 1 point X-1"
    assert quota.detail.startswith(where)
    assert "'WHP-NOPE'" in quota.detail
    assert "record 2 point X-2" in unit.detail
    assert "'furlong'" in unit.detail
    assert "mm" in unit.detail  # names what is accepted
    assert quota.payload_hash == incoming.block.digest
    assert (quota.gateway, quota.topic, quota.at) == (GW.gateway, GW.topics.block, BASE_TIME)


@pytest.mark.parametrize(
    ("value", "quality", "flags", "expected_quality", "expected_flags"),
    [
        (41.0, Quality.GOOD, (), "uncertain", (OUT_OF_RANGE,)),
        (-0.5, Quality.GOOD, ("clock_suspect",), "uncertain", ("clock_suspect", OUT_OF_RANGE)),
        (99.0, Quality.BAD, (), "bad", (OUT_OF_RANGE,)),
        (99.0, Quality.UNCERTAIN, (OUT_OF_RANGE,), "uncertain", (OUT_OF_RANGE,)),
        (40.0, Quality.GOOD, (), "good", ()),  # the range is inclusive
        (None, Quality.BAD, (), "bad", ()),
    ],
)
def test_out_of_range_keeps_the_value_and_flags_it(
    value: float | None,
    quality: Quality,
    flags: tuple[str, ...],
    expected_quality: str,
    expected_flags: tuple[str, ...],
) -> None:
    (entry,) = _entries(_reading(value, quality=quality, flags=flags)).entries.readings
    assert entry.value == value
    assert (entry.quality, entry.flags) == (expected_quality, expected_flags)


def test_range_is_judged_after_conversion() -> None:
    (entry,) = _entries(_reading(41_000.0, unit="mm")).entries.readings  # 41 m > 40 m
    assert (entry.value, entry.quality, entry.flags) == (41.0, "uncertain", (OUT_OF_RANGE,))


def test_an_overflowing_conversion_is_bad_and_carries_no_number() -> None:
    level = CATALOGUE.get("WHP-LT")
    assert level is not None
    with_km = dataclasses.replace(level, units={**level.units, "km": UnitConversion(1000.0)})
    catalogue = Catalogue({**CATALOGUE.indicators, "WHP-LT": with_km})
    block = decode_block(GW.block(1, records=[_reading(1.7e308, unit="km")]))
    (entry,) = block_entries(GW.topics.block, block, BASE_TIME, catalogue).readings
    assert (entry.value, entry.quality, entry.flags) == (None, "bad", (OUT_OF_RANGE,))


def test_gap_records_pass_and_block_bytes_are_untouched() -> None:
    records: list[Record] = [
        _reading(1500.0, unit="mm"),
        gap_record(3, lost=2),
        gap_record(3, None, GapReason.OUTBOX_CORRUPT, epoch="old", from_seq=7, point=None),
    ]
    incoming = _entries(*records, seq=3)
    assert incoming.block.payload == GW.block(3, records=records)
    assert b'"unit":"mm"' in incoming.block.payload
    disk, corrupt = incoming.entries.gaps
    assert disk == GapEntry(
        idx=1,
        t=BASE_TIME + 3,
        reason=GapReason.DISK_FULL,
        lost=2,
        point="T001-LT-01",
        t_from=BASE_TIME - 7,
        t_to=BASE_TIME + 2,
    )
    assert (corrupt.idx, corrupt.reason, corrupt.lost, corrupt.point) == (
        2,
        GapReason.OUTBOX_CORRUPT,
        None,
        None,
    )
    assert (corrupt.epoch, corrupt.from_seq, corrupt.to_seq) == ("old", 7, None)


# --- alarm events -------------------------------------------------------------------------


def test_alarm_values_convert_when_the_unit_is_accepted_and_stay_otherwise() -> None:
    incoming = _entries(
        alarm_record("a1", AlarmEvent.RAISE, BASE_TIME, value=8700.0, threshold=8500.0, unit="mm"),
        alarm_record(
            "a2", AlarmEvent.RAISE, BASE_TIME, level="rate", value=6.0, threshold=5.0, unit="mm/h"
        ),
        alarm_record("a3", AlarmEvent.RAISE, BASE_TIME, quota="WHP-NOPE"),
    )
    converted, as_sent = incoming.entries.alarms
    assert (converted.value, converted.threshold, converted.unit) == (8.7, 8.5, "m")
    assert (as_sent.value, as_sent.threshold, as_sent.unit) == (6.0, 5.0, "mm/h")
    (entry,) = _entries(
        alarm_record(
            "a4",
            AlarmEvent.RAISE,
            BASE_TIME,
            point="S01-GX-01",
            quota="BP-GX",
            level="rate",
            value=0.5,
            threshold=10.0,
            unit="mm/h",
        )
    ).entries.alarms
    assert (entry.value, entry.threshold, entry.unit) == (12.0, 240.0, "mm/d")
    (rejected,) = incoming.entries.rejected
    assert rejected.reason is Reason.UNKNOWN_QUOTA
    assert "record 2 point T001-LT-01" in rejected.detail


def _event(
    alarm_id: str, event: AlarmEvent, t: float, idx: int = 0, value: float = 1.0
) -> AlarmEntry:
    return AlarmEntry(
        idx=idx,
        alarm_id=alarm_id,
        point="P",
        quota="WHP-LT",
        event=event,
        t=t,
        level="H",
        value=value,
        threshold=0.5,
        unit="m",
        trigger_t=t,
    )


def _merge_all(events: list[AlarmEntry]) -> AlarmState | None:
    state: AlarmState | None = None
    for event in events:
        state = merge_alarm(state, "g", ("e", 1), event)
    return state


def test_a_clear_before_its_raise_still_pairs() -> None:
    clear = _event("a", AlarmEvent.CLEAR, 20.0, idx=1, value=0.1)
    raise_ = _event("a", AlarmEvent.RAISE, 10.0, value=0.9)
    alone = _merge_all([clear])
    assert alone is not None
    assert (alone.raised_at, alone.cleared_at, alone.active_at(30.0), alone.since) == (
        None,
        20.0,
        False,
        20.0,
    )
    paired = _merge_all([clear, raise_])
    assert paired is not None
    assert (paired.raised_at, paired.cleared_at, paired.value, paired.since) == (
        10.0,
        20.0,
        0.9,
        10.0,
    )
    assert (paired.raised_in, paired.cleared_in) == (("e", 1, 0), ("e", 1, 1))
    assert paired == _merge_all([raise_, clear])


@given(
    st.lists(
        st.tuples(st.sampled_from(list(AlarmEvent)), st.integers(0, 5), st.integers(0, 3)),
        min_size=1,
        max_size=5,
    )
)
def test_pairing_does_not_depend_on_arrival_order(raw: list[tuple[AlarmEvent, int, int]]) -> None:
    # Distinct times per event kind: equal times are a tie the edge never produces.
    unique = {(kind, t): value for kind, t, value in raw}
    events = [_event("a", kind, float(t), value=float(v)) for (kind, t), v in unique.items()]
    results = {_merge_all(list(order)) for order in itertools.permutations(events)}
    assert len(results) == 1
    (state,) = results
    assert state is not None
    raises = [e.t for e in events if e.event is AlarmEvent.RAISE]
    clears = [e.t for e in events if e.event is AlarmEvent.CLEAR]
    assert state.raised_at == min(raises, default=None)
    assert state.cleared_at == min(clears, default=None)
    assert state.active_at(0.0) == (bool(raises) and not clears)


@given(
    st.lists(
        st.tuples(st.sampled_from(list(AlarmEvent)), st.integers(0, 5), st.booleans()),
        min_size=1,
        max_size=5,
    )
)
def test_a_half_stamped_ahead_is_marked_whatever_the_arrival_order(
    raw: list[tuple[AlarmEvent, int, bool]],
) -> None:
    """An event's being ahead of the collector's clock goes with it: the half it wins is
    marked, an earlier event of the same kind takes the half and its mark, and an alarm
    raised by an event ahead is not active."""
    ahead = {(kind, t): late for kind, t, late in raw}
    events = [_event("a", kind, float(t)) for kind, t in ahead]

    def merged(order: tuple[AlarmEntry, ...]) -> AlarmState | None:
        state: AlarmState | None = None
        for event in order:
            late = ahead[(event.event, int(event.t))]
            state = merge_alarm(state, "g", ("e", 1), event, ahead=late)
        return state

    results = {merged(order) for order in itertools.permutations(events)}
    assert len(results) == 1
    (state,) = results
    assert state is not None
    first = {
        kind: min((e.t for e in events if e.event is kind), default=None) for kind in AlarmEvent
    }
    raise_t, clear_t = first[AlarmEvent.RAISE], first[AlarmEvent.CLEAR]
    raised_ahead = raise_t is not None and ahead[(AlarmEvent.RAISE, int(raise_t))]
    cleared_ahead = clear_t is not None and ahead[(AlarmEvent.CLEAR, int(clear_t))]
    assert (state.raised_ahead, state.cleared_ahead) == (raised_ahead, cleared_ahead)
    open_ = raise_t is not None and clear_t is None
    assert state.active_at(-1.0, allowance=0.0) == (open_ and not raised_ahead)
    # Once the clock reaches the raise (the allowance short of it), it is active all the same.
    assert state.active_at(3.0, allowance=2.0) == open_
    assert state.flags == (("ahead_of_collector",) if raised_ahead or cleared_ahead else ())


# --- meta ---------------------------------------------------------------------------------

POINTS = (
    PointMeta("T001-LT-01", "WHP-LT", "mm", "储罐液位", "tank-1", {"high": 8500.0}),
    PointMeta("X-1", "WHP-NOPE", "bar", "unknown", "dev", {"high": 1.0}),
)


def _meta_inbound(payload: bytes, properties: list[tuple[str, str]], topic: str = "") -> Inbound:
    return Inbound(topic or GW.topics.meta, payload, tuple(properties), BASE_TIME + 5)


def test_meta_verifies_like_a_block_and_converts_known_points() -> None:
    payload = GW.meta(POINTS, issued_at=BASE_TIME + 1)
    verdict = judge_meta(_meta_inbound(payload, GW.sign(payload)), _grants(), CATALOGUE)
    assert isinstance(verdict, IncomingMeta)
    assert (verdict.issued_at, verdict.received_at, verdict.payload) == (
        BASE_TIME + 1,
        BASE_TIME + 5,
        payload,
    )
    level, unknown = verdict.points
    assert (level.unit, dict(level.thresholds)) == ("m", {"high": 8.5})
    assert (unknown.unit, dict(unknown.thresholds)) == ("bar", {"high": 1.0})  # as sent
    assert meta_point(POINTS[0], CATALOGUE) == level


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("unsigned", Reason.BAD_SIGNATURE),
        ("tampered", Reason.BAD_SIGNATURE),
        ("foreign", Reason.UNKNOWN_KEY),
        ("other-gateway-key", Reason.KEY_NOT_OWNED),
        ("not-meta", Reason.MALFORMED),
        ("other-topic", Reason.TOPIC_MISMATCH),
    ],
)
def test_bad_meta_is_audited_with_the_block_reasons(case: str, reason: Reason) -> None:
    payload = GW.meta(POINTS)
    properties = GW.sign(payload)
    topic = ""
    if case == "unsigned":
        properties = []
    elif case == "tampered":
        payload = payload.replace(b"tank-1", b"tank-2")
    elif case == "foreign":
        properties = GW.sign(payload, foreign_key())
    elif case == "other-gateway-key":
        properties = GW.sign(payload, OTHER.key)
    elif case == "not-meta":
        payload = GW.block(1)
        properties = GW.sign(payload)
    elif case == "other-topic":
        payload = OTHER.meta(POINTS)
        properties = GW.sign(payload)
    verdict = judge_meta(_meta_inbound(payload, properties, topic), _grants(), CATALOGUE)
    assert isinstance(verdict, AuditEntry)
    assert verdict.reason is reason
    assert verdict.topic == GW.topics.meta


def test_plan_batch_routes_meta_messages() -> None:
    payload = GW.meta(POINTS)
    batch = plan_batch([_meta_inbound(payload, GW.sign(payload))], _grants(), CATALOGUE)
    assert len(batch.metas) == 1
    assert not batch.audits
