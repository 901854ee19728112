"""Pure collector decisions: sequence tracking, dedupe, verification, cursors, tokens."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from collector.api.core import (
    ApiToken,
    CursorError,
    decode_cursor,
    encode_cursor,
    find_token,
    is_online,
)
from collector.ingest.core import Inbound, ack_keys, build_acks, plan_batch
from collector.ingest.judge import MAX_ID, judge_block, judge_status
from collector.model import (
    MAX_DETAIL,
    MESSAGE_BYTES,
    AuditEntry,
    BatchResult,
    BlockEntries,
    GapEntry,
    Gateway,
    IncomingBlock,
    KeyGrant,
    LiveKey,
    Outcome,
    ReadingEntry,
    Reason,
    StatusUpdate,
    StreamState,
)
from collector.readmodel import GatewayView, Page, Scope, pages
from collector.storage.core import (
    Span,
    StreamChange,
    advance,
    chain_breaks,
    classify,
    dedupe_audits,
    hole_changes,
    progress,
    pruned_keys,
    stream_changes,
)
from collector.storage.readings import (
    keys_to_look_up,
    newest_readings,
    unique_readings,
    within_retention,
)
from specs.ack import MAX_ACK_KEYS, decode_ack
from specs.block import GENESIS, decode_block
from specs.catalogue import default_catalogue
from specs.records import AlarmEvent, AlarmRecord, GapReason, Quality, Reading, iso_time
from specs.signing import signature_from_properties, signing_key_from_seed
from specs.status import GatewayStatus
from tests.support.collector_client import BASE_TIME, foreign_key, gap_record, sim_gateway

GW = sim_gateway(1)
OTHER = sim_gateway(2)


def _grants(*gateways: object, revoked: bool = False) -> dict[str, KeyGrant]:
    grants: dict[str, KeyGrant] = {}
    for sim in (GW, OTHER):
        if sim not in gateways:
            continue
        gateway, key = sim.registration()
        if revoked:
            key = type(key)(key.kid, key.gateway, key.alg, key.public_pem, key.added_at, BASE_TIME)
        grants[key.kid] = KeyGrant(key, gateway)
    return grants


def _inbound(
    payload: bytes, properties: list[tuple[str, str]], topic: str | None = None
) -> Inbound:
    return Inbound(topic or GW.topics.block, payload, tuple(properties), BASE_TIME)


def _reason(verdict: object) -> Reason | None:
    return verdict.reason if isinstance(verdict, AuditEntry) else None


# --- sequence tracking --------------------------------------------------------------------


def _covered(spans: Sequence[Span], seq: int) -> bool:
    return any(low <= seq and (high is None or seq <= high) for low, high in spans)


def _brute(seqs: set[int], spans: Sequence[Span] = ()) -> tuple[int, int, list[tuple[int, int]]]:
    """(acked_through, max_seq, missing) recomputed from the sets, seq by seq."""
    ends = [low - 1 if high is None else high for low, high in spans]
    top = max([0, *seqs, *ends])
    missing: list[tuple[int, int]] = []
    for seq in range(1, top + 1):
        if seq in seqs or _covered(spans, seq):
            continue
        if missing and missing[-1][1] == seq - 1:
            missing[-1] = (missing[-1][0], seq)
        else:
            missing.append((seq, seq))
    return (missing[0][0] - 1 if missing else top), top, missing


@given(st.lists(st.lists(st.integers(1, 60), max_size=8), max_size=12))
def test_advance_matches_recomputing_from_the_set(batches: list[list[int]]) -> None:
    state = StreamState("g", "e")
    stored: set[int] = set()
    for batch in batches:
        state = advance(state, batch)  # repeats and already-stored seqs are harmless
        stored |= set(batch)
        acked, top, missing = _brute(stored)
        assert state == StreamState("g", "e", acked, top, tuple(missing))


@given(st.lists(st.lists(st.integers(1, 60), max_size=8), max_size=12))
def test_hole_rows_follow_the_stream_and_untouched_holes_stay(batches: list[list[int]]) -> None:
    """Deleting `gone` and writing `opened` keeps the rows equal to the stream's holes."""
    stream = ("g", "e")
    state = StreamState(*stream)
    rows: set[tuple[str, str, int, int]] = set()
    for batch in batches:
        after = advance(state, batch)
        gone, opened = hole_changes({stream: state} if state.max_seq else {}, {stream: after})
        assert set(gone) <= rows
        assert not set(opened) & (rows - set(gone))
        kept = rows - set(gone)
        rows = kept | set(opened)
        assert rows == {(*stream, low, high) for low, high in after.missing}
        assert kept == {(*stream, *hole) for hole in set(state.missing) & set(after.missing)}
        state = after


spans = st.tuples(st.integers(1, 60), st.none() | st.integers(0, 15)).map(
    lambda span: (span[0], None if span[1] is None else span[0] + span[1])
)


@given(
    st.lists(
        st.tuples(st.lists(st.integers(1, 70), max_size=6), st.lists(spans, max_size=2)),
        max_size=12,
    )
)
def test_declared_seqs_are_closed_whatever_the_arrival_order(
    batches: list[tuple[list[int], list[Span]]],
) -> None:
    state = StreamState("g", "e")
    stored: set[int] = set()
    declared: list[Span] = []
    for seqs, ranges in batches:
        state = advance(state, seqs, ranges)
        stored |= set(seqs)
        declared.extend(ranges)
        missing = {seq for low, high in state.missing for seq in range(low, high + 1)}
        every = range(1, state.max_seq + 1)
        assert not {seq for seq in missing if _covered(declared, seq)}  # missing ∩ declared = ∅
        assert not missing & stored
        assert all(s in stored or s in missing or _covered(declared, s) for s in every)
        assert all(s in stored or _covered(declared, s) for s in range(1, state.acked_through + 1))
        # The same sets in any order give the same state: it is a function of them alone.
        assert (state.acked_through, state.max_seq, list(state.missing)) == _brute(stored, declared)
        assert all(_covered(state.declared, s) == _covered(declared, s) for s in range(100))
        assert list(state.declared) == sorted(state.declared)


def test_an_open_ended_declaration_closes_holes_that_open_later() -> None:
    state = advance(StreamState("g", "e"), [1, 2])
    state = advance(state, [], [(5, None)])  # the agent abandoned the epoch from seq 5 on
    assert (state.acked_through, state.max_seq, state.missing) == (2, 4, ((3, 4),))
    state = advance(state, [9])  # a block sealed before the abandonment: opens no hole
    assert (state.acked_through, state.max_seq, state.missing) == (2, 9, ((3, 4),))
    state = advance(state, [4, 3])
    assert (state.acked_through, state.missing, state.declared) == (9, (), ((5, None),))


def test_a_later_block_cannot_reopen_declared_seqs() -> None:
    state = advance(StreamState("g", "e"), [1], [(3, 6)])
    assert (state.acked_through, state.max_seq, state.missing) == (1, 6, ((2, 2),))
    state = advance(state, [10])
    assert state.missing == ((2, 2), (7, 9))
    state = advance(state, [2, 7, 8, 9])
    assert (state.acked_through, state.missing) == (10, ())


def test_out_of_order_opens_and_closes_a_hole() -> None:
    state = advance(StreamState("g", "e"), [1])
    state = advance(state, [3])
    assert (state.acked_through, state.missing) == (1, ((2, 2),))
    state = advance(state, [2])
    assert (state.acked_through, state.max_seq, state.missing) == (3, 3, ())


def _incoming(seq: int, epoch: str, entries: BlockEntries) -> IncomingBlock:
    """GW's block `seq` of `epoch`, signed, received at BASE_TIME + seq, with `entries`."""
    payload = GW.block(seq, epoch=epoch)
    return IncomingBlock(
        GW.topics.block, decode_block(payload), GW.key.sign(payload), BASE_TIME + seq, entries
    )


def _gap_block(seq: int, *gaps: GapEntry, epoch: str = "epoch-2") -> IncomingBlock:
    return _incoming(seq, epoch, BlockEntries(gaps=gaps))


def test_stream_changes_route_declarations_to_the_epoch_they_name() -> None:
    corrupt = GapEntry(0, BASE_TIME, GapReason.OUTBOX_CORRUPT, None, None, epoch="epoch-1",
                       from_seq=40)  # fmt: skip
    full = GapEntry(1, BASE_TIME, GapReason.OUTBOX_FULL, 9, None, epoch="epoch-2", from_seq=2,
                    to_seq=3)  # fmt: skip
    no_range = GapEntry(2, BASE_TIME, GapReason.DISK_FULL, 4, "P")
    blocks = [_gap_block(1, corrupt), _gap_block(5, full, no_range), _gap_block(5, full)]
    outcomes = (Outcome.STORED, Outcome.STORED, Outcome.DUPLICATE)
    changes = stream_changes(blocks, outcomes)
    assert changes == {
        (GW.gateway, "epoch-2"): StreamChange((1, 5), ((2, 3),), BASE_TIME + 5),
        (GW.gateway, "epoch-1"): StreamChange((), ((40, None),), 0.0),
    }
    # Nothing of a conflicting block counts, but its stream is flagged; so is a broken one.
    assert stream_changes(blocks[:1], (Outcome.SEQ_CONFLICT,), {(GW.gateway, "x")}) == {
        (GW.gateway, "epoch-2"): StreamChange(conflict=True),
        (GW.gateway, "x"): StreamChange(conflict=True),
    }


def test_classify_by_membership_within_and_across_batches() -> None:
    one = GW.block(1)
    other = GW.block(1, records=[GW.reading(1, 5)])
    blocks = [
        IncomingBlock(GW.topics.block, decode_block(p), GW.key.sign(p), BASE_TIME, BlockEntries())
        for p in (one, one, other, GW.block(2))
    ]
    assert classify(blocks, {}) == (
        Outcome.STORED,
        Outcome.DUPLICATE,
        Outcome.SEQ_CONFLICT,
        Outcome.STORED,
    )
    stored = {(GW.gateway, "epoch-1", 2): "not-the-hash"}
    assert classify(blocks[3:], stored) == (Outcome.SEQ_CONFLICT,)


def test_a_seq_retention_pruned_is_a_duplicate_unless_it_was_declared_lost() -> None:
    """Below pruned_through every seq was stored or declared lost: one not in the table and not
    declared was stored, and its block went with retention; a declared one may still come."""
    blocks = [
        IncomingBlock(GW.topics.block, decode_block(p), GW.key.sign(p), BASE_TIME, BlockEntries())
        for p in (GW.block(3), GW.block(5), GW.block(8), GW.block(9))
    ]
    state = StreamState(GW.gateway, "epoch-1", 9, 9, declared=((5, 6),), pruned_through=8)
    stored = {(GW.gateway, "epoch-1", 8): blocks[2].block.digest}
    pruned = pruned_keys(blocks, stored, {(GW.gateway, "epoch-1"): state})
    assert pruned == {(GW.gateway, "epoch-1", 3)}
    assert classify(blocks, stored, pruned) == (
        Outcome.DUPLICATE,
        Outcome.STORED,
        Outcome.DUPLICATE,
        Outcome.STORED,
    )
    assert pruned_keys(blocks, {}, {}) == frozenset()  # a stream not stored yet
    rows = dedupe_audits(blocks, classify(blocks, stored, pruned), pruned)
    assert [row.detail.split(" seq ")[1] for row in rows] == [
        "3 was stored, then deleted by retention (storage.raw_days)",
        "8 is stored already with the same bytes",
    ]


def test_a_dedupe_audit_row_keeps_its_detail_short_whatever_the_epoch() -> None:
    """The detail quotes the block's epoch, which the block may make as long as it likes."""
    blocks = [_incoming(1, "e" * 2 * MAX_DETAIL, BlockEntries())] * 2
    rows = dedupe_audits(blocks, (Outcome.DUPLICATE, Outcome.SEQ_CONFLICT))
    assert [row.reason for row in rows] == [Reason.DUPLICATE, Reason.SEQ_CONFLICT]
    assert [len(row.detail) for row in rows] == [MAX_DETAIL, MAX_DETAIL]
    assert rows[0].detail.startswith(f"gateway {GW.gateway} epoch eee")


# --- verification -------------------------------------------------------------------------


def test_a_good_block_is_accepted() -> None:
    payload = GW.block(1)
    verdict = judge_block(_inbound(payload, GW.sign(payload)), _grants(GW), default_catalogue())
    assert isinstance(verdict, IncomingBlock)
    assert verdict.block.payload == payload


def _mutations() -> dict[str, tuple[Reason, dict[str, object]]]:
    """Per case: the expected reason and what differs from a good, signed block."""
    good = GW.block(1)
    flipped = bytes([good[0] ^ 0x01]) + good[1:]
    not_json = b"{not json"
    elsewhere = GW.block(1, header={"district": "110101"})
    signed = GW.sign(good)
    return {
        "unsigned": (Reason.BAD_SIGNATURE, {"properties": []}),
        "alg_none": (Reason.BAD_ALGORITHM, {"properties": [("alg", "none"), *signed[1:]]}),
        "sm2_unavailable": (
            Reason.BAD_ALGORITHM,
            {"properties": [("alg", "sm2-sm3"), *signed[1:]]},
        ),
        "foreign_key": (Reason.UNKNOWN_KEY, {"properties": GW.sign(good, foreign_key())}),
        "revoked": (Reason.REVOKED_KEY, {"grants": _grants(GW, revoked=True)}),
        "other_gateways_key": (Reason.KEY_NOT_OWNED, {"properties": GW.sign(good, OTHER.key)}),
        "flipped_bit": (Reason.BAD_SIGNATURE, {"payload": flipped}),
        "not_json": (Reason.MALFORMED, {"payload": not_json, "properties": GW.sign(not_json)}),
        "payload_district": (
            Reason.TOPIC_MISMATCH,
            {"payload": elsewhere, "properties": GW.sign(elsewhere)},
        ),
        "topic_district": (
            Reason.TOPIC_MISMATCH,
            {"topic": GW.topics.block.replace(GW.district, "110101", 1)},
        ),
    }


MUTATIONS = _mutations()


@pytest.mark.parametrize("case", sorted(MUTATIONS))
def test_each_rejection_has_its_reason(case: str) -> None:
    reason, changes = MUTATIONS[case]
    payload = changes.get("payload", GW.block(1))
    properties = changes.get("properties", GW.sign(GW.block(1)))
    grants = changes.get("grants", _grants(GW, OTHER))
    topic = changes.get("topic")
    assert isinstance(payload, bytes)
    assert isinstance(properties, list)
    assert isinstance(grants, dict)
    assert topic is None or isinstance(topic, str)
    verdict = judge_block(_inbound(payload, properties, topic), grants, default_catalogue())
    assert _reason(verdict) is reason
    assert not isinstance(verdict, IncomingBlock)
    assert verdict.gateway == GW.gateway
    assert len(verdict.payload_hash) == 64


@pytest.mark.parametrize(
    "payload",
    [
        GW.block(2**63),
        GW.block(1, records=[gap_record(1, lost=2**64)]),
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_validly_signed_monsters_are_malformed_not_crashes(payload: bytes) -> None:
    verdict = judge_block(_inbound(payload, GW.sign(payload)), _grants(GW), default_catalogue())
    assert _reason(verdict) is Reason.MALFORMED


def _block_with_ids(length: int) -> dict[str, bytes]:
    """Blocks naming one id of `length` characters each: epoch, point, alarm id, gap's."""
    name = ("P" * length)[:length]
    t = iso_time(BASE_TIME)
    reading = Reading(name, "WHP-LT", t, 1.0, "m", Quality.GOOD)
    alarm = AlarmRecord(name, "T001-LT-01", "WHP-LT", t, AlarmEvent.RAISE, "H", 8.7, 8.5, "m", t)
    return {
        "epoch": GW.block(1, epoch=name),
        "point": GW.block(1, records=[reading]),
        "alarm id": GW.block(1, records=[alarm]),
        "gap epoch": GW.block(1, records=[gap_record(1, epoch=name, from_seq=1, to_seq=1)]),
        "gap point": GW.block(1, records=[gap_record(1, point=name)]),
    }


@pytest.mark.parametrize("field", list(_block_with_ids(1)))
def test_an_id_past_what_an_index_holds_is_malformed(field: str) -> None:
    """Found by a hostile tester: on PostgreSQL a 3,000-character epoch, point or alarm id
    failed the batch ('index row size ... exceeds btree version 4 maximum 2704')."""
    payload = _block_with_ids(MAX_ID + 1)[field]
    verdict = judge_block(_inbound(payload, GW.sign(payload)), _grants(GW), default_catalogue())
    assert _reason(verdict) is Reason.MALFORMED
    assert isinstance(verdict, AuditEntry)
    assert f"{field} of {MAX_ID + 1} characters" in verdict.detail


@pytest.mark.parametrize("field", ["epoch", "alarm id", "gap epoch"])
def test_ids_up_to_the_bound_are_taken(field: str) -> None:
    """Point ids are bounded by the contract's rule, 64 (test_collector_point_ids)."""
    payload = _block_with_ids(MAX_ID)[field]
    verdict = judge_block(_inbound(payload, GW.sign(payload)), _grants(GW), default_catalogue())
    assert isinstance(verdict, IncomingBlock)


def test_a_backslash_before_u0000_in_text_is_no_nul() -> None:
    """Only the escape \\u0000 is a NUL (refused: test_attacks_on_ingest); an escaped backslash
    followed by the letters u0000 is text like any other."""
    text = "C:\\u0000 log"
    alarm = AlarmRecord("a1", "T001-LT-01", "WHP-LT", iso_time(BASE_TIME), AlarmEvent.RAISE,
                        "H", 8.7, 8.5, "m", iso_time(BASE_TIME), None, text)  # fmt: skip
    payload = GW.block(1, records=[alarm])
    assert b"\\\\u0000" in payload
    verdict = judge_block(_inbound(payload, GW.sign(payload)), _grants(GW), default_catalogue())
    assert isinstance(verdict, IncomingBlock)
    assert verdict.block.records[0] == alarm


def test_status_messages() -> None:
    status_topic = GW.topics.status
    heartbeat = GatewayStatus(online=True, t=5.0).encode()
    signed = Inbound(status_topic, heartbeat, tuple(GW.sign(heartbeat)), 5.0)
    assert judge_status(signed, _grants(GW)) == StatusUpdate(GW.gateway, online=True, at=5.0)
    assert judge_status(Inbound(status_topic, b"", (), 5.0), _grants(GW)) is None
    for junk in (b'{"online": "yes"}', b"\xff", b"[" * 100_000):
        bad = judge_status(Inbound(status_topic, junk, tuple(GW.sign(junk)), 5.0), _grants(GW))
        assert _reason(bad) is Reason.MALFORMED
    unknown = Inbound(OTHER.topics.status, heartbeat, tuple(OTHER.sign(heartbeat)), 5.0)
    assert _reason(judge_status(unknown, _grants(GW))) is Reason.UNKNOWN_KEY


def test_plan_batch_sorts_messages_and_acks_are_signed_per_block() -> None:
    collector = signing_key_from_seed(bytes(range(32)))
    first, second = GW.block(1), GW.block(2)
    will = GatewayStatus(online=False, t=BASE_TIME - 3600).encode()
    messages = [
        _inbound(first, GW.sign(first)),
        _inbound(first, GW.sign(first)),
        _inbound(second, []),
        Inbound(GW.topics.meta, b"{}", (), BASE_TIME),  # unsigned: judged like a block
        Inbound(f"{GW.topics.base}/up/other", b"{}", (), BASE_TIME),
        Inbound(GW.topics.status, will, tuple(GW.sign(will)), BASE_TIME),
    ]
    batch = plan_batch(messages, _grants(GW), default_catalogue())
    assert len(batch.blocks) == 2
    assert [a.reason for a in batch.audits] == [
        Reason.BAD_SIGNATURE,
        Reason.BAD_SIGNATURE,
        Reason.UNSUPPORTED_TOPIC,
    ]
    assert len(batch.statuses) == 1
    state = StreamState(GW.gateway, "epoch-1", 1, 1, ())
    result = BatchResult((Outcome.STORED, Outcome.DUPLICATE), {(GW.gateway, "epoch-1"): state})
    acks = build_acks(batch.blocks, result, collector, BASE_TIME)
    assert len(acks) == 1  # one ACK per distinct block
    assert acks[0].topic == GW.topics.ack
    ack = decode_ack(acks[0].payload)
    assert (ack.acked_through, ack.seq, ack.epoch) == (1, 1, "epoch-1")
    collector.public().verify(signature_from_properties(list(acks[0].properties)), acks[0].payload)
    # Each ACK says the largest payload taken: the agent splits a block over it.
    assert ack.max_message_bytes == MESSAGE_BYTES
    (limited,) = build_acks(batch.blocks, result, collector, BASE_TIME, max_message_bytes=5 << 20)
    assert decode_ack(limited.payload).max_message_bytes == 5 << 20


# --- API pieces ---------------------------------------------------------------------------


@given(
    st.tuples(
        st.text(max_size=30),
        st.text(max_size=30),
        st.floats(-1e12, 1e12, allow_nan=False),
        st.integers(-(2**63), 2**63 - 1),
    )
)
def test_cursor_round_trip(position: tuple[str, str, float, int]) -> None:
    cursor = encode_cursor("readings", position)
    assert decode_cursor("readings", cursor, (str, str, float, int)) == position


@pytest.mark.parametrize(
    "cursor", ["", "!!!", encode_cursor("points", ("a", "b")), encode_cursor("readings", (1, 2))]
)
def test_foreign_or_broken_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(CursorError):
        decode_cursor("readings", cursor, (str, str, float, int))


def _forged(body: str) -> str:
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "body",
    [
        '["readings",["a","b",1.0,100000000000000000000000000000]]',  # past 64 bits
        '["readings",["a","b",1e300,1]]',  # no time is that far
        '["readings",["a","b",Infinity,1]]',
        '["readings",["\\ud800","b",1.0,1]]',  # a lone surrogate: no database stores it
        "[" * 5000 + "]" * 5000,
    ],
)
def test_forged_cursors_that_would_break_a_query_are_refused(body: str) -> None:
    """Found by review: these reached the database and answered 500."""
    with pytest.raises(CursorError):
        decode_cursor("readings", _forged(body), (str, str, float, int))


@pytest.mark.parametrize(
    ("start", "stored", "expected"),
    [
        # from the start, until a page says no more follow
        (None, {None: (1, 2), 2: (3, 4), 4: (5,)}, [None, 2, 4]),
        # from a cursor's position, until a page that says more comes back empty
        (2, {2: (3, 4), 4: ()}, [2, 4]),
    ],
)
async def test_pages_fetch_each_after_the_last_item_of_the_one_before(
    start: int | None, stored: dict[int | None, tuple[int, ...]], expected: list[int | None]
) -> None:
    asked: list[int | None] = []

    async def fetch(after: int | None) -> Page[int]:
        asked.append(after)
        return Page(stored[after], more=after != expected[-1] or not stored[after])

    got = [page.items async for page in pages(fetch, lambda n: n, start)]
    assert asked == expected
    assert got == [stored[after] for after in expected]


def test_tokens_and_scopes() -> None:
    tokens = [ApiToken("all", "s3cret", ("*",)), ApiToken("nc", "nc-token", ("360100", "360102"))]
    assert find_token(tokens, "nope") is None
    assert find_token(tokens, "s3cret") == tokens[0]
    assert tokens[0].scope == Scope()
    assert tokens[1].scope == Scope(frozenset({"360100", "360102"}))
    assert not tokens[1].scope.allows("110101")


def _view(online: bool | None, status_seen: float | None, block_seen: float | None) -> GatewayView:
    return GatewayView(
        gateway="g",
        enterprise="e",
        district="360100",
        status_online=online,
        status_seen=status_seen,
        block_seen=block_seen,
        epoch=None,
        acked_through=None,
        gaps=0,
    )


def test_online_follows_the_newest_sign_of_life() -> None:
    heartbeat = _view(online=True, status_seen=100.0, block_seen=None)
    assert is_online(heartbeat, 150.0, 60.0)
    assert not is_online(heartbeat, 161.0, 60.0)
    last_will = _view(online=False, status_seen=100.0, block_seen=90.0)
    assert not is_online(last_will, 101.0, 60.0)
    blocks_after_will = _view(online=False, status_seen=100.0, block_seen=120.0)
    assert is_online(blocks_after_will, 130.0, 60.0)
    assert not is_online(_view(online=None, status_seen=None, block_seen=None), 0.0, 60.0)


def test_registered_gateway_fixture_is_consistent() -> None:
    gateway, key = GW.registration()
    assert gateway == Gateway(GW.gateway, GW.enterprise, GW.district, BASE_TIME)
    assert key.kid == GW.key.kid


@pytest.mark.parametrize(
    "payload",
    [
        b'{"online": ' + b"1" * 5000 + b"}",
        b'{"online": 1e400}',
        b'{"online": "\\ud800"}',
        b"[" * 50_000,
        b"\xff",
    ],
)
def test_hostile_signed_status_is_an_audit_row_not_a_crash(payload: bytes) -> None:
    gateway = GW
    message = Inbound(
        topic=f"gz/1/{gateway.district}/{gateway.enterprise}/{gateway.gateway}/status",
        payload=payload,
        properties=tuple(gateway.sign(payload)),
        received_at=1.0,
    )
    judged = judge_status(message, _grants(GW))
    assert isinstance(judged, AuditEntry)
    assert judged.reason is Reason.MALFORMED


# --- reading uniqueness -------------------------------------------------------------------


def _reading_entry(idx: int, point: str, t: float, value: float | None = 1.0) -> ReadingEntry:
    return ReadingEntry(idx, point, "WHP-LT", t, value, "m", "good", ())


def _readings_block(seq: int, *readings: ReadingEntry, epoch: str = "epoch-1") -> IncomingBlock:
    return _incoming(seq, epoch, BlockEntries(readings=readings))


def test_a_reading_of_a_stored_key_is_left_out_and_audited_once_per_block_and_reason() -> None:
    stored = {(GW.gateway, "P-1", 10.0): (1.0, "m", "good")}
    first = _readings_block(
        1,
        _reading_entry(0, "P-1", 10.0),  # duplicate of the stored one
        _reading_entry(1, "P-1", 11.0),  # new
        _reading_entry(2, "P-1", 11.0, 2.0),  # conflicts with the one just before
        *(_reading_entry(3 + i, "P-1", 10.0, 9.0) for i in range(5)),  # conflicts, 5 times
    )
    clean = _readings_block(2, _reading_entry(0, "P-1", 12.0), epoch="epoch-2")
    again = _readings_block(3, _reading_entry(0, "P-1", 11.0), epoch="epoch-2")  # other epoch
    blocks, audits = unique_readings([first, clean, again], stored)
    assert [r.idx for r in blocks[0].entries.readings] == [1]
    assert blocks[1] is clean  # untouched when nothing repeats
    assert blocks[2].entries.readings == ()
    assert [(a.reason, a.payload_hash) for a in audits] == [
        (Reason.DUPLICATE, first.block.digest),
        (Reason.CONFLICT, first.block.digest),
        (Reason.DUPLICATE, again.block.digest),
    ]
    conflict = audits[1].detail
    assert f"gateway {GW.gateway} epoch epoch-1 seq 1: 6 reading(s)" in conflict
    assert conflict.count("P-1@") == 3  # the first few, not all six
    assert conflict.endswith(", ...")
    assert iso_time(11.0) in conflict


def test_readings_before_retentions_mark_are_left_out_and_audited_once_per_block() -> None:
    """Before the mark the collector holds no (point, t) to tell a repeat from a first."""
    mixed = _readings_block(
        1,
        *(_reading_entry(i, "P-1", 10.0 + i) for i in range(5)),  # before the mark
        _reading_entry(5, "P-1", 100.0),  # at it: kept
    )
    young = _readings_block(2, _reading_entry(0, "P-1", 101.0))
    assert within_retention([mixed, young], None) == ((mixed, young), ())
    blocks, audits = within_retention([mixed, young], 100.0)
    assert [r.t for r in blocks[0].entries.readings] == [100.0]
    assert blocks[1] is young  # untouched when nothing is before the mark
    assert [(a.reason, a.payload_hash) for a in audits] == [
        (Reason.PAST_RETENTION, mixed.block.digest)
    ]
    detail = audits[0].detail
    assert f"gateway {GW.gateway} epoch epoch-1 seq 1: 5 reading(s) from before" in detail
    assert iso_time(100.0) in detail
    assert detail.count("P-1@") == 3  # the first few, not all five
    assert detail.endswith(", ...")


@given(
    st.lists(
        st.lists(
            st.tuples(st.sampled_from(["A", "B"]), st.integers(0, 4), st.sampled_from([1.0, 2.0])),
            max_size=6,
        ),
        max_size=6,
    ),
    st.dictionaries(st.tuples(st.sampled_from(["A", "B"]), st.integers(0, 4)), st.just(1.0)),
)
def test_readings_stay_unique_and_every_left_out_one_is_counted(
    blocks_spec: list[list[tuple[str, int, float]]], stored_spec: dict[tuple[str, int], float]
) -> None:
    stored = {(GW.gateway, p, float(t)): (v, "m", "good") for (p, t), v in stored_spec.items()}
    blocks = [
        _readings_block(seq, *(_reading_entry(i, p, float(t), v) for i, (p, t, v) in enumerate(rs)))
        for seq, rs in enumerate(blocks_spec, start=1)
    ]
    kept_blocks, audits = unique_readings(blocks, stored)
    kept = [(GW.gateway, r.point, r.t) for b in kept_blocks for r in b.entries.readings]
    assert len(kept) == len(set(kept))
    assert not set(kept) & set(stored)
    every = sum(len(b.entries.readings) for b in blocks)
    counted = sum(int(a.detail.split(": ")[1].split(" ")[0]) for a in audits)
    assert len(kept) + counted == every
    assert len(audits) <= 2 * len(blocks)
    first_values: dict[tuple[str, str, float], float | None] = {k: v[0] for k, v in stored.items()}
    for block in blocks:
        for r in block.entries.readings:
            first_values.setdefault((GW.gateway, r.point, r.t), r.value)
    for block in kept_blocks:  # what is kept is always the first value of its key
        for r in block.entries.readings:
            assert first_values[(GW.gateway, r.point, r.t)] == r.value


def test_only_readings_not_newer_than_their_series_are_looked_up() -> None:
    keys = [("g", "A", 1.0), ("g", "A", 5.0), ("g", "A", 6.0), ("g", "B", 1.0), ("h", "A", 1.0)]
    newest = {("g", "A"): 5.0, ("h", "A"): 0.5}
    assert keys_to_look_up(keys, newest, 100.0) == [("g", "A", 1.0), ("g", "A", 5.0)]


def test_readings_past_the_cutoff_are_looked_up_themselves() -> None:
    """A reading stamped past the collector's clock may be stored (ahead, or resealed): it is
    looked up whatever its series' newest t, which stops at the cutoff."""
    keys = [("g", "A", 6.0), ("g", "A", 2099.0), ("g", "B", 2099.0)]
    assert keys_to_look_up(keys, {("g", "A"): 5.0}, 10.0) == [
        ("g", "A", 2099.0),
        ("g", "B", 2099.0),
    ]


# --- chain and conflicts ------------------------------------------------------------------


def _chained(seq: int, prev: str, *, index: int = 0) -> IncomingBlock:
    payload = GW.block(seq, prev=prev, records=[GW.reading(seq, index)])
    return IncomingBlock(
        GW.topics.block, decode_block(payload), GW.key.sign(payload), BASE_TIME, BlockEntries()
    )


def _link(block: IncomingBlock) -> tuple[str, str]:
    return (block.block.digest, block.block.header.prev)


def test_chain_breaks_are_found_against_stored_neighbours_and_within_the_batch() -> None:
    one = _chained(1, GENESIS)
    two = _chained(2, one.block.digest)
    three = _chained(3, two.block.digest)
    key = (GW.gateway, "epoch-1")
    # A chain that holds, arriving in any split between database and batch.
    assert chain_breaks([two], {(*key, 1): _link(one), (*key, 3): _link(three)}) == ()
    assert chain_breaks([three, one, two], {}) == ()
    # Block 2 with other content: neither neighbour chains with it.
    other = _chained(2, GENESIS, index=5)
    found = chain_breaks([other], {(*key, 1): _link(one), (*key, 3): _link(three)})
    assert [b.stream for b in found] == [key, key]
    assert [b.audit.reason for b in found] == [Reason.CHAIN_BREAK] * 2
    assert "seq 2 has prev " + GENESIS in found[0].audit.detail
    assert f"seq 3 has prev {two.block.digest}" in found[1].audit.detail
    assert all(b.audit.payload_hash == other.block.digest for b in found)
    # Within one batch a broken link is reported once, not from both ends.
    assert len(chain_breaks([one, other], {})) == 1
    # Another epoch's seq 1 is no neighbour.
    assert chain_breaks([one], {(GW.gateway, "epoch-0", 2): ("h", "p")}) == ()


def test_progress_keeps_conflict_for_good_and_drops_a_stale_acked_hash() -> None:
    state = StreamState("g", "e", 1, 1, acked_hash="h1")
    flagged = progress(state, StreamChange(conflict=True))
    assert (flagged.conflict, flagged.acked_hash, flagged.acked_through) == (True, "h1", 1)
    later = progress(flagged, StreamChange(seqs=(2,)))
    assert (later.conflict, later.acked_hash, later.acked_through) == (True, None, 2)


def test_an_ack_names_the_gateways_live_keys_newest_first() -> None:
    collector = signing_key_from_seed(bytes(range(32)))
    block = _chained(1, GENESIS)
    retiring = LiveKey("00000000000000aa", 10.0, BASE_TIME + 1)
    retired = LiveKey("00000000000000bb", 5.0, BASE_TIME)
    announced = LiveKey("00000000000000cc", 20.0, None)
    state = StreamState(GW.gateway, "epoch-1", 1, 1)
    result = BatchResult(
        (Outcome.STORED,),
        {(GW.gateway, "epoch-1"): state},
        {GW.gateway: (retiring, retired, announced)},
    )
    (sent,) = build_acks([block], result, collector, BASE_TIME)
    assert decode_ack(sent.payload).keys == (announced.kid, retiring.kid)
    # Bounded: a gateway rotating over and over cannot make every ACK grow.
    many = [LiveKey(f"{n:016x}", float(n), None) for n in range(MAX_ACK_KEYS + 5)]
    assert ack_keys(many, BASE_TIME) == tuple(f"{n:016x}" for n in reversed(range(5, 21)))
    assert ack_keys((), BASE_TIME) == ()  # every key revoked: an empty list, not no word


def test_a_seq_conflict_gets_an_ack_that_says_so() -> None:
    collector = signing_key_from_seed(bytes(range(32)))
    stored = _chained(1, GENESIS)
    conflicting = _chained(1, GENESIS, index=3)
    state = StreamState(GW.gateway, "epoch-1", 1, 1, acked_hash=stored.block.digest, conflict=True)
    result = BatchResult((Outcome.SEQ_CONFLICT,), {(GW.gateway, "epoch-1"): state})
    (sent,) = build_acks([conflicting], result, collector, BASE_TIME)
    ack = decode_ack(sent.payload)
    assert (ack.seq, ack.acked_through, ack.conflict) == (1, 1, True)
    assert ack.acked_hash == stored.block.digest != conflicting.block.digest
    collector.public().verify(signature_from_properties(list(sent.properties)), sent.payload)


@given(
    st.lists(
        st.lists(
            st.tuples(st.sampled_from(["P-1", "P-2", "P-3"]), st.integers(0, 5), st.floats(0, 9)),
            max_size=6,
        ),
        max_size=4,
    )
)
def test_newest_readings_picks_what_a_row_by_row_upsert_would_leave(
    blocks: list[list[tuple[str, int, float]]],
) -> None:
    incoming = [
        _readings_block(
            seq + 1, *(_reading_entry(i, p, float(t), v) for i, (p, t, v) in enumerate(b))
        )
        for seq, b in enumerate(blocks)
    ]
    upserted: dict[tuple[str, str], ReadingEntry] = {}
    for block in incoming:
        for reading in block.entries.readings:
            key = (block.block.header.gateway, reading.point)
            if key not in upserted or reading.t >= upserted[key].t:
                upserted[key] = reading
    assert {(g, r.point): r for g, r in newest_readings(incoming)} == upserted
