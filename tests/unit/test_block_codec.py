"""The block codec and signatures: canonical bytes, strict decoding, tamper evidence."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.core.chain import ChainState, Identity, seal
from specs.ack import Ack, AckFormatError, decode_ack
from specs.block import GENESIS, BlockFormatError, block_hash, decode_block
from specs.records import AlarmEvent, GapReason, GapRecord, Quality, Reading, iso_time
from specs.signing import (
    BadSignatureError,
    Signature,
    UnsupportedAlgorithmError,
    load_signing_key,
    load_verify_key,
    private_pem,
    signature_from_properties,
    signature_properties,
    signing_key_from_seed,
)
from tests.support.records import alarm_record

KEY = signing_key_from_seed(bytes(range(32)))
OTHER = signing_key_from_seed(bytes(range(1, 33)))
SITE = Identity("91360100MA35GW001H-GW01", "91360100MA35GW001H", "360100", "WHP")

readings = st.builds(
    Reading,
    point=st.from_regex(r"[A-Z][A-Z0-9\-]{0,20}", fullmatch=True),
    quota=st.sampled_from(["WHP-LT", "WHP-TT", "WHP-LEL"]),
    t=st.floats(0, 4e9).map(iso_time),
    value=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    unit=st.sampled_from(["m", "℃", "%LEL"]),
    quality=st.sampled_from(list(Quality)),
    flags=st.lists(st.sampled_from(["out_of_range", "clock_unsynced"]), max_size=2).map(tuple),
)


@given(st.lists(readings, max_size=20))
def test_sealed_block_decodes_to_the_same_records(records: list[Reading]) -> None:
    block, state = seal(
        ChainState.genesis("e1"), SITE, tuple(records), now=1.7e9, clock_synced=True, key=KEY
    )
    decoded = decode_block(block.payload)
    assert decoded.records == tuple(records)
    assert decoded.header.seq == 1
    assert decoded.header.prev == GENESIS
    assert state.last_hash == block_hash(block.payload) == decoded.digest
    KEY.public().verify(block.signature, block.payload)


@given(st.lists(readings, min_size=1, max_size=5), st.data())
def test_any_changed_byte_breaks_the_signature(records: list[Reading], data: st.DataObject) -> None:
    block, _ = seal(
        ChainState.genesis("e1"), SITE, tuple(records), now=1.7e9, clock_synced=True, key=KEY
    )
    index = data.draw(st.integers(0, len(block.payload) - 1))
    flipped = bytearray(block.payload)
    flipped[index] ^= data.draw(st.integers(1, 255))
    with pytest.raises(BadSignatureError):
        KEY.public().verify(block.signature, bytes(flipped))


def test_chain_links_each_block_to_the_previous_bytes() -> None:
    state = ChainState.genesis("e1")
    first, state = seal(state, SITE, (), now=1.7e9, clock_synced=False, key=KEY)
    second, state = seal(state, SITE, (), now=1.7e9, clock_synced=False, key=KEY)
    assert decode_block(second.payload).header.prev == first.digest
    assert (second.seq, state.last_seq) == (2, 2)
    assert decode_block(first.payload).header.clock == "unsynced"


gaps = st.builds(
    GapRecord,
    t=st.floats(0, 4e9).map(iso_time),
    reason=st.sampled_from(list(GapReason)),
    lost=st.none() | st.integers(0, 2**63 - 1),
    t_from=st.none() | st.floats(0, 4e9).map(iso_time),
    t_to=st.none() | st.floats(0, 4e9).map(iso_time),
    point=st.none() | st.just("T001-LT-01"),
) | st.builds(
    lambda gap, epoch, seqs, open_ended: GapRecord(
        t=gap.t,
        reason=gap.reason,
        lost=gap.lost,
        epoch=epoch,
        from_seq=min(seqs),
        to_seq=None if open_ended else max(seqs),
    ),
    st.builds(GapRecord, t=st.just(iso_time(1.7e9)), reason=st.sampled_from(list(GapReason)),
              lost=st.none() | st.integers(0, 1000)),
    st.sampled_from(["e", "3f6b9e2a0c5d7148"]),
    st.tuples(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1)),
    st.booleans(),
)  # fmt: skip


@given(st.lists(gaps, min_size=1, max_size=5))
def test_gap_records_round_trip(records: list[GapRecord]) -> None:
    block, _ = seal(
        ChainState.genesis("e"), SITE, tuple(records), now=1.7e9, clock_synced=True, key=KEY
    )
    assert decode_block(block.payload).records == tuple(records)
    wire = json.loads(block.payload)["records"][0]
    assert set(wire) == {"type", "t", "reason", "lost", "from", "to", "epoch", "from_seq",
                         "to_seq", "point"}  # fmt: skip


_GAP: dict[str, object] = {
    "type": "gap",
    "t": "2026-01-01T00:00:00+00:00",
    "reason": "outbox_full",
    "lost": 3,
    "from": None,
    "to": None,
    "epoch": "e0",
    "from_seq": 4,
    "to_seq": 9,
    "point": None,
}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"reason": "device_unreachable"}, "reason"),
        ({"epoch": None}, "need an 'epoch'"),
        ({"from_seq": None}, "needs 'from_seq'"),
        ({"from_seq": 10}, "reversed"),
        ({"lost": -1}, "count"),
        ({"to_seq": 2**63}, "64-bit"),
        ({"from": "yesterday"}, "ISO"),
    ],
)
def test_malformed_gap_records_are_refused(change: dict[str, object], reason: str) -> None:
    block, _ = seal(ChainState.genesis("e"), SITE, (), now=1.7e9, clock_synced=True, key=KEY)
    body = json.loads(block.payload)
    body["records"].append(_GAP)
    decode_block(json.dumps(body).encode())  # the unchanged record is fine
    body["records"][0] = {**_GAP, **change}
    with pytest.raises(BlockFormatError, match=reason):
        decode_block(json.dumps(body).encode())


def test_foreign_key_signature_is_rejected() -> None:
    block, _ = seal(ChainState.genesis("e"), SITE, (), now=1.7e9, clock_synced=True, key=OTHER)
    with pytest.raises(BadSignatureError):
        KEY.public().verify(block.signature, block.payload)
    forged = Signature(KEY.alg, KEY.kid, block.signature.sig)
    with pytest.raises(BadSignatureError):
        KEY.public().verify(forged, block.payload)


@pytest.mark.parametrize("alg", ["none", "hmac-sha256", "sm2-sm3", ""])
def test_algorithms_off_the_available_list_are_rejected(alg: str) -> None:
    signature = Signature(alg, KEY.kid, KEY.sign(b"x").sig)
    with pytest.raises(UnsupportedAlgorithmError):
        KEY.public().verify(signature, b"x")


def test_keys_survive_pem_round_trips() -> None:
    again = load_signing_key(private_pem(KEY))
    assert again.kid == KEY.kid
    public = load_verify_key(KEY.public().public_pem())
    public.verify(again.sign(b"payload"), b"payload")


def test_signature_travels_as_user_properties() -> None:
    signature = KEY.sign(b"payload")
    assert signature_from_properties(signature_properties(signature)) == signature


@pytest.mark.parametrize(
    ("mutation", "reason"),
    [
        (lambda b: b.update(spec="gz/2"), "spec"),
        (lambda b: b.update(seq=0), "seq"),
        (lambda b: b.update(seq="1"), "seq"),
        (lambda b: b.update(domain="XX"), "domain"),
        (lambda b: b.update(records={}), "records"),
        (lambda b: b["records"].append({"type": "nope"}), "unknown"),
        (lambda b: b["records"].append({"type": "reading", "point": "P", "quota": "Q",
                                        "t": "yesterday", "value": 1, "unit": "m",
                                        "quality": "good", "flags": []}), "ISO"),
        (lambda b: b["records"].append({"type": "reading", "point": "P", "quota": "Q",
                                        "t": "2026-01-01T00:00:00+00:00", "value": True,
                                        "unit": "m", "quality": "good", "flags": []}), "finite"),
        (lambda b: b["records"].append({"type": "reading", "point": "P", "quota": "Q",
                                        "t": "2026-01-01T00:00:00+00:00", "value": 1,
                                        "unit": "m", "quality": "fine", "flags": []}), "quality"),
    ],
)  # fmt: skip
def test_malformed_blocks_are_refused_with_a_reason(mutation: object, reason: str) -> None:
    block, _ = seal(ChainState.genesis("e"), SITE, (), now=1.7e9, clock_synced=True, key=KEY)
    body = json.loads(block.payload)
    assert callable(mutation)
    mutation(body)
    with pytest.raises(BlockFormatError, match=reason):
        decode_block(json.dumps(body).encode())


@given(st.binary(max_size=200))
def test_decoding_garbage_raises_only_block_format_error(payload: bytes) -> None:
    with pytest.raises(BlockFormatError):
        decode_block(payload)


def test_ack_round_trip_and_rejections() -> None:
    ack = Ack("gw", "e1", 7, ((9, 10),), 11, iso_time(1.7e9))
    assert decode_ack(ack.encode()) == ack
    extended = Ack("gw", "e1", 7, (), 7, iso_time(1.7e9), acked_hash="ab" * 32, conflict=True)
    assert decode_ack(extended.encode()) == extended
    for field, bad in (
        ("acked_hash", 7),
        ("conflict", "yes"),
        ("issued_at", "yesterday"),
        ("issued_at", "2026-12-07T08:00:00"),  # no offset: whose clock?
    ):
        body = json.loads(extended.encode())
        body[field] = bad
        with pytest.raises(AckFormatError, match=field):
            decode_ack(json.dumps(body).encode())
    with pytest.raises(AckFormatError):
        decode_ack(b'{"spec":"gz/1","missing":[[3,1]]}')
    with pytest.raises(AckFormatError):
        decode_ack(b"not json")


def test_ack_keys_are_optional_and_unknown_fields_are_ignored() -> None:
    old = Ack("gw", "e1", 7, (), 7, iso_time(1.7e9))
    assert "keys" not in json.loads(old.encode())  # as a collector before `keys` sends it
    assert decode_ack(old.encode()).keys is None
    keyed = Ack("gw", "e1", 7, (), 7, iso_time(1.7e9), keys=("0123456789abcdef",))
    assert json.loads(keyed.encode())["keys"] == ["0123456789abcdef"]
    assert decode_ack(keyed.encode()) == keyed
    assert decode_ack(Ack("gw", "e1", 7, (), 7, iso_time(1.7e9), keys=()).encode()).keys == ()
    for bad in ("0123456789abcdef", [7], {"kid": "x"}):
        body = json.loads(keyed.encode())
        body["keys"] = bad
        with pytest.raises(AckFormatError, match="keys"):
            decode_ack(json.dumps(body).encode())
    # A field a later collector adds does not cut this agent off (as `keys` did not before).
    body = {**json.loads(keyed.encode()), "later": {"any": [1]}}
    assert decode_ack(json.dumps(body).encode()) == keyed


def test_ack_max_message_bytes_is_optional_and_a_positive_count() -> None:
    old = Ack("gw", "e1", 7, (), 7, iso_time(1.7e9))
    assert "max_message_bytes" not in json.loads(old.encode())  # a collector before it
    assert decode_ack(old.encode()).max_message_bytes is None
    said = Ack("gw", "e1", 7, (), 7, iso_time(1.7e9), max_message_bytes=16 * 1024 * 1024)
    assert json.loads(said.encode())["max_message_bytes"] == 16 * 1024 * 1024
    assert decode_ack(said.encode()) == said
    for bad in (0, -1, 1.5, "4MiB", True):
        body = {**json.loads(said.encode()), "max_message_bytes": bad}
        with pytest.raises(AckFormatError, match="max_message_bytes"):
            decode_ack(json.dumps(body).encode())


def test_alarm_records_round_trip_and_name_their_trigger() -> None:
    raise_event = alarm_record(
        "T001-LT-01/HH/1",
        AlarmEvent.RAISE,
        1.7e9 + 1,
        level="HH",
        value=9.2,
        threshold=9.0,
        trigger_t=1.7e9,
    )
    block, _ = seal(
        ChainState.genesis("e"), SITE, (raise_event,), now=1.7e9, clock_synced=True, key=KEY
    )
    assert decode_block(block.payload).records == (raise_event,)
    body = json.loads(block.payload)
    body["records"][0]["event"] = "maybe"
    with pytest.raises(BlockFormatError, match="raise"):
        decode_block(json.dumps(body).encode())


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"spec": "gz/1", "seq": ' + b"1" * 5000 + b"}", "out of range"),
        (b'{"spec": "gz/1", "seq": 1e400}', "finite"),
        (b'{"spec": "gz/1", "seq": NaN}', "not allowed"),
        (b'{"spec": "gz/1", "gateway": "\\ud800"}', "surrogate"),
        (b"[" * 100_000, "deep"),
        (b"\xff\xfe", "UTF-8"),
    ],
)
def test_hostile_json_is_a_format_error_not_a_crash(payload: bytes, reason: str) -> None:
    with pytest.raises(BlockFormatError, match=reason):
        decode_block(payload)
    with pytest.raises(AckFormatError):
        decode_ack(payload)


def test_times_that_cannot_be_rendered_again_are_refused() -> None:
    block, _ = seal(ChainState.genesis("e"), SITE, (), now=1.7e9, clock_synced=True, key=KEY)
    body = json.loads(block.payload)
    body["sealed_at"] = "9999-12-31T23:59:59-14:00"
    with pytest.raises(BlockFormatError, match="outside"):
        decode_block(json.dumps(body).encode())
