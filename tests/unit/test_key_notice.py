"""Pure: which blocks refused for their key the collector answers, to whom, how often."""

from __future__ import annotations

from collector.ingest.core import Inbound, notice_ack, plan_batch
from collector.ingest.key_notice import (
    KEY_NOTICE_INTERVAL,
    KeyNotices,
    key_refusal,
    registered_at_their_place,
)
from collector.model import Gateway, KeyRefusal, LiveKey, Reason, StreamState
from specs.ack import decode_ack
from specs.catalogue import default_catalogue
from specs.signing import generate_signing_key
from specs.topics import GatewayTopics
from tests.support.collector_client import sim_gateway

GW = sim_gateway(61)
OTHER = sim_gateway(62)
COLLECTOR = generate_signing_key()


def test_a_block_refused_for_its_key_names_its_topic_and_epoch() -> None:
    payload = GW.block(3, epoch="e-7")
    for reason in (Reason.UNKNOWN_KEY, Reason.REVOKED_KEY, Reason.RETIRED_KEY):
        assert key_refusal(GW.topics.block, payload, reason) == KeyRefusal(GW.topics, "e-7")


def test_other_refusals_junk_and_blocks_of_another_place_are_not_answered() -> None:
    payload = GW.block(3)
    assert key_refusal(GW.topics.block, payload, Reason.BAD_SIGNATURE) is None
    assert key_refusal(GW.topics.block, b"junk", Reason.UNKNOWN_KEY) is None
    assert key_refusal("gz/1/x", payload, Reason.UNKNOWN_KEY) is None
    assert key_refusal(OTHER.topics.block, payload, Reason.UNKNOWN_KEY) is None
    long_epoch = GW.block(3, epoch="e" * 257)
    assert key_refusal(GW.topics.block, long_epoch, Reason.UNKNOWN_KEY) is None


def test_plan_batch_lists_the_blocks_refused_for_their_key() -> None:
    payload = GW.block(1, epoch="e-1")
    junk = b"junk"
    batch = plan_batch(
        [
            Inbound(GW.topics.block, payload, tuple(GW.sign(payload)), 1.0),
            Inbound(GW.topics.block, junk, tuple(GW.sign(junk)), 1.0),
        ],
        {},
        default_catalogue(),
    )
    assert [a.reason for a in batch.audits] == [Reason.UNKNOWN_KEY, Reason.UNKNOWN_KEY]
    assert batch.key_refusals == (KeyRefusal(GW.topics, "e-1"),)


def test_only_gateways_registered_at_the_place_named_are_answered() -> None:
    here = KeyRefusal(GW.topics, "e")
    elsewhere = KeyRefusal(GatewayTopics(GW.district, OTHER.enterprise, GW.gateway), "e")
    unknown = KeyRefusal(OTHER.topics, "e")
    registered = {GW.gateway: Gateway(GW.gateway, GW.enterprise, GW.district, 0.0)}
    assert registered_at_their_place([here, elsewhere, unknown], registered) == (here,)


def test_each_gateway_is_told_once_per_interval() -> None:
    notices = KeyNotices()
    first, last = KeyRefusal(GW.topics, "e-1"), KeyRefusal(GW.topics, "e-2")
    other = KeyRefusal(OTHER.topics, "e-1")
    assert notices.due([first, other, last], 100.0) == (last, other)
    notices.told(GW.gateway, 100.0)
    assert notices.due([first], 100.0 + KEY_NOTICE_INTERVAL - 1) == ()
    assert notices.due([other], 100.0 + KEY_NOTICE_INTERVAL - 1) == (other,)  # never told
    assert notices.due([first], 100.0 + KEY_NOTICE_INTERVAL) == (first,)


def test_the_notice_is_an_ack_of_what_is_stored_answering_no_block() -> None:
    refusal = KeyRefusal(GW.topics, "e-1")
    state = StreamState(GW.gateway, "e-1", acked_through=4, max_seq=9, missing=((6, 8),))
    keys = [LiveKey("k-live", 1.0, None), LiveKey("k-retired", 2.0, 5.0)]
    sent = notice_ack(refusal, state, keys, COLLECTOR, 10.0)
    assert sent.topic == GW.topics.ack
    ack = decode_ack(sent.payload)
    assert (ack.epoch, ack.acked_through, ack.missing, ack.seq) == ("e-1", 4, ((6, 8),), None)
    assert ack.keys == ("k-live",)
    said = notice_ack(refusal, state, keys, COLLECTOR, 10.0, max_message_bytes=5 << 20)
    assert decode_ack(said.payload).max_message_bytes == 5 << 20

    nothing = decode_ack(notice_ack(refusal, None, keys, COLLECTOR, 10.0).payload)
    assert (nothing.acked_through, nothing.missing, nothing.acked_hash) == (0, (), None)
    assert (nothing.seq, nothing.conflict) == (None, False)
