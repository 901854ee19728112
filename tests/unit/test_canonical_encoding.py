"""The fast block encoder writes exactly the reference canonical JSON bytes.

Reference: `json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
allow_nan=False)` in UTF-8 (specs.wirejson.canonical_json). Signatures and the hash chain
cover these bytes, so any difference would break every verifier of the golden vectors.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from specs.block import BlockHeader, encode_block, reference_encode_block
from specs.records import (
    AlarmEvent,
    AlarmRecord,
    GapReason,
    GapRecord,
    KeyRecord,
    Quality,
    Reading,
    Record,
    record_json,
)

# Any text a driver or a site map could hand over: non-ASCII, quotes, backslashes, control
# characters, U+2028; lone surrogates cannot be UTF-8 and fail both encoders alike.
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
values = st.one_of(
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e-05, 1e16, -0.0, 0.0, 1e22, 5e-324, 1.7976931348623157e308, 0.1, 100.0]),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
readings = st.builds(
    Reading,
    point=texts,
    quota=texts,
    t=texts,
    value=values,
    unit=texts,
    quality=st.sampled_from(list(Quality)),
    flags=st.lists(texts, max_size=3).map(tuple),
)
others: st.SearchStrategy[Record] = st.one_of(
    st.builds(
        GapRecord,
        t=texts,
        reason=st.sampled_from(list(GapReason)),
        lost=st.none() | st.integers(0, 2**63 - 1),
        t_from=st.none() | texts,
        epoch=st.none() | texts,
        from_seq=st.none() | st.integers(1, 2**63 - 1),
    ),
    st.builds(
        AlarmRecord,
        alarm_id=texts,
        point=texts,
        quota=texts,
        t=texts,
        event=st.sampled_from(list(AlarmEvent)),
        level=texts,
        value=values,
        threshold=values,
        unit=texts,
        trigger_t=texts,
        detail=st.none() | texts,
    ),
    st.builds(KeyRecord, t=texts, kid=texts, alg=texts, public_key=texts, replaces=texts),
)
headers = st.builds(
    BlockHeader,
    gateway=texts,
    enterprise=texts,
    district=texts,
    domain=st.sampled_from(["WHP", "WKK", "YHBZ", "MK", "BP"]),
    epoch=texts,
    seq=st.integers(1, 2**63 - 1),
    prev=texts,
    sealed_at=texts,
    clock=st.sampled_from(["synced", "unsynced"]),
    mine_code=st.none() | st.text("0123456789", min_size=9, max_size=9),
)


def reference(value: object) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def reading(value: float | None, text: str = "T001-LT-01") -> Reading:
    return Reading(text, "WHP-LT", "2026-12-06T08:00:00.000+00:00", value, "m", Quality.GOOD)


@given(readings)
@example(reading(1e-05))
@example(reading(1e16))
@example(reading(-0.0))
@example(reading(None, '液位"\\\n\u2028\x00é'))
def test_a_reading_encodes_as_the_reference(record: Reading) -> None:
    assert record_json(record).encode("utf-8") == reference(record.to_wire())


@given(others)
def test_other_records_encode_as_the_reference(record: Record) -> None:
    assert record_json(record).encode("utf-8") == reference(record.to_wire())


@given(headers, st.lists(st.one_of(readings, others), max_size=6))
def test_a_block_encodes_as_the_reference(header: BlockHeader, records: list[Record]) -> None:
    assert encode_block(header, records) == reference_encode_block(header, records)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused_like_the_reference(value: float) -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        reference(reading(value).to_wire())
    with pytest.raises(ValueError, match="Out of range float"):
        record_json(reading(value))
