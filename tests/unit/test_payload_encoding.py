"""specs.encoding: round trips, what the agent picks, and every refusal with its reason."""

from __future__ import annotations

import base64
import hashlib
import math
import re
import struct
from pathlib import Path

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from collector.ingest.core import Inbound, decode_inbound, plan_batch
from collector.model import AuditEntry, Reason
from specs.block import BlockHeader, encode_block
from specs.catalogue import default_catalogue
from specs.encoding import (
    D1_SHA256,
    D1_UP_TO,
    ENC_PROPERTY,
    MAX_DECODED_BYTES,
    Encoding,
    EncodingError,
    choose_encoding,
    decode_payload,
    encode_payload,
    encoding_of,
    values_layout,
)
from specs.records import Quality, Reading, iso_time
from specs.zstd_d1 import DICTIONARY_B64

EXAMPLES = Path(__file__).resolve().parents[2] / "specs" / "examples"
BLOCK = (EXAMPLES / "block-whp-1.json").read_bytes()
TOPIC = "gz/1/360100/91360100MA35GW001H/91360100MA35GW001H-GW01/up/block"


@given(st.binary(max_size=4096), st.sampled_from(list(Encoding)))
def test_every_payload_round_trips(payload: bytes, encoding: Encoding) -> None:
    if encoding is Encoding.ZSTD_D1V and b"\x00" in payload:
        with pytest.raises(EncodingError, match="NUL"):
            encode_payload(payload, encoding)
        assert choose_encoding(payload, encoding) is Encoding.ZSTD_D1
        return
    assert decode_payload(encode_payload(payload, encoding), encoding) == payload


_NUMBERS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(width=32, allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.none(),
)


@given(st.lists(_NUMBERS, min_size=1, max_size=40))
def test_values_apart_gives_back_every_block_exactly(values: list[float | None]) -> None:
    records = [
        Reading(f"P{i}", "WHP-LT", iso_time(1.7e9 + i), value, "m", Quality.GOOD)
        for i, value in enumerate(values)
    ]
    header = BlockHeader("g", "e", "360100", "WHP", "ep", 1, "0" * 64, iso_time(1.7e9), "synced")
    payload = encode_block(header, records)
    wire = encode_payload(payload, Encoding.ZSTD_D1V)
    assert decode_payload(wire, Encoding.ZSTD_D1V) == payload


def test_values_apart_moves_long_float_values_only() -> None:
    block = (EXAMPLES / "block-whp-3.json").read_bytes()
    layout = values_layout(block)
    assert int.from_bytes(layout[:4], "big") == 7
    assert layout.count(b'"value":\x00') == 7
    short = values_layout(BLOCK)  # 8.57, 2.5, ...: cheaper as text
    assert short == bytes(4) + BLOCK


# The layout as first written (regex matches judged one by one), kept as the oracle of the
# faster `values_layout` (one split): both must give the same bytes for every payload.
_ORACLE_VALUE = re.compile(
    rb'"value":(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)(?=[,}])'
)


def values_layout_oracle(payload: bytes) -> bytes:
    values: list[float] = []
    pieces: list[bytes] = []
    last = 0
    for match in _ORACLE_VALUE.finditer(payload):
        start, end = match.span(1)
        if end - start < 8 or payload[match.start() - 1] not in frozenset(b",{"):
            continue
        text = match.group(1)
        value = float(text)
        if repr(value).encode("ascii") != text:
            continue
        values.append(value)
        pieces += (payload[last:start], b"\x00")
        last = end
    pieces.append(payload[last:])
    return struct.pack(f">I{len(values)}d", len(values), *values) + b"".join(pieces)


_LAYOUT_PIECES = st.sampled_from(
    [
        b'"value":',
        b'{"value":',
        b',"value":',
        b'\\"value":',
        b"12.5",
        b"-0.0",
        b"123456789",
        b"0.30000000000000004",
        b"1e-07",
        b"1.5E+20",
        b"17.299999237060547",
        b"1.00000000",
        b",",
        b"}",
        b"{",
        b"]",
        b'"t":"x"',
        b"null",
    ]
)


@given(
    st.lists(_LAYOUT_PIECES | st.binary(max_size=6), max_size=30).map(b"".join),
    st.lists(_NUMBERS, max_size=20),
)
def test_values_layout_is_the_oracle_to_the_byte(soup: bytes, values: list[float | None]) -> None:
    records = [
        Reading(f"P{i}", "WHP-LT", iso_time(1.7e9 + i), value, "m", Quality.GOOD)
        for i, value in enumerate(values)
    ]
    header = BlockHeader("g", "e", "360100", "WHP", "ep", 1, "0" * 64, iso_time(1.7e9), "synced")
    for payload in (soup, encode_block(header, records), soup + encode_block(header, records)):
        assert values_layout(payload) == values_layout_oracle(payload)


def test_the_dictionary_is_d1() -> None:
    assert hashlib.sha256(base64.b64decode(DICTIONARY_B64)).hexdigest() == D1_SHA256


def test_the_dictionary_shrinks_a_small_block() -> None:
    plain = len(encode_payload(BLOCK, Encoding.ZSTD))
    with_dictionary = len(encode_payload(BLOCK, Encoding.ZSTD_D1))
    assert with_dictionary < 0.7 * plain < 0.35 * len(BLOCK)


def test_the_agent_picks_d1_for_small_payloads_zstd_above_and_nothing_past_the_cap() -> None:
    assert choose_encoding(BLOCK, Encoding.ZSTD_D1) is Encoding.ZSTD_D1
    assert choose_encoding(b" " * (D1_UP_TO + 1), Encoding.ZSTD_D1V) is Encoding.ZSTD_D1V
    assert choose_encoding(b" " * (D1_UP_TO + 1), Encoding.ZSTD_D1) is Encoding.ZSTD
    assert choose_encoding(b" " * (MAX_DECODED_BYTES + 1), Encoding.ZSTD) is None
    assert choose_encoding(BLOCK, None) is None


def test_properties_name_at_most_one_known_encoding() -> None:
    assert encoding_of([("alg", "ed25519")]) is None
    assert encoding_of([(ENC_PROPERTY, "zstd-d1")]) is Encoding.ZSTD_D1
    with pytest.raises(EncodingError, match="is unknown"):
        encoding_of([(ENC_PROPERTY, "gzip")])
    with pytest.raises(EncodingError, match="given 2 times"):
        encoding_of([(ENC_PROPERTY, "zstd"), (ENC_PROPERTY, "zstd")])


def _d1v_frame(layout: bytes) -> bytes:
    return encode_payload(layout, Encoding.ZSTD_D1)  # zstd-d1v is zstd-d1 over its layout


def test_a_d1v_layout_that_does_not_add_up_is_refused() -> None:
    layout = values_layout((EXAMPLES / "block-whp-3.json").read_bytes())
    count, rest = int.from_bytes(layout[:4], "big"), layout[4:]
    cases = {
        b"\x00\x01": "shorter than its value count",
        (count + 10_000).to_bytes(4, "big") + rest: "too short for",
        (count + 1).to_bytes(4, "big") + struct.pack(">d", 1.0) + rest: "places for",
        (count + 1).to_bytes(4, "big") + struct.pack(">d", math.inf) + rest + b"\x00": "finite",
    }
    for bad, why in cases.items():
        with pytest.raises(EncodingError, match=why):
            decode_payload(_d1v_frame(bad), Encoding.ZSTD_D1V)


def test_a_d1v_layout_is_held_to_the_cap_as_it_expands() -> None:
    # 904 bytes of layout, 1,800 decoded: each double prints with 18 characters.
    layout = (100).to_bytes(4, "big") + struct.pack(">d", 0.1234567890123456) * 100 + bytes(100)
    with pytest.raises(EncodingError, match="more than 1000 bytes"):
        decode_payload(_d1v_frame(layout), Encoding.ZSTD_D1V, limit=1000)
    assert decode_payload(_d1v_frame(layout), Encoding.ZSTD_D1V) == b"0.1234567890123456" * 100


def _refusal(payload: bytes, enc: str) -> AuditEntry:
    verdict = decode_inbound(
        Inbound(TOPIC, payload, (("alg", "ed25519"), (ENC_PROPERTY, enc)), received_at=1.0)
    )
    assert isinstance(verdict, AuditEntry)
    assert verdict.reason is Reason.MALFORMED
    return verdict


def test_refusals_say_why() -> None:
    good = encode_payload(BLOCK, Encoding.ZSTD_D1)
    bomb = zstandard.ZstdCompressor(level=1).compress(b"\0" * (MAX_DECODED_BYTES + 1))
    unsized = zstandard.ZstdCompressor(write_content_size=False).compress(BLOCK)
    cases = {
        (bomb, "zstd"): f"would decode to {MAX_DECODED_BYTES + 1} bytes, over",
        (unsized, "zstd"): "does not declare its decoded size",
        (good, "br"): "encoding 'br' is unknown",
        (good[:-5], "zstd-d1"): "does not decode",
        (good + good, "zstd-d1"): "does not decode",  # a second frame is data after the first
        (b"not zstd", "zstd"): "not a zstd frame",
        # A d1 frame without the dictionary does not come out as the block.
        (good, "zstd"): "does not decode",
    }
    for (payload, enc), why in cases.items():
        audit = _refusal(payload, enc)
        assert audit.detail.startswith("enc: ")
        assert why in audit.detail, (enc, audit.detail)
        assert audit.gateway == "91360100MA35GW001H-GW01"


def test_a_decoded_message_carries_the_canonical_bytes_and_no_enc() -> None:
    message = Inbound(
        TOPIC,
        encode_payload(BLOCK, Encoding.ZSTD_D1),
        (("alg", "ed25519"), (ENC_PROPERTY, "zstd-d1"), ("kid", "k")),
        received_at=1.0,
    )
    decoded = decode_inbound(message)
    assert isinstance(decoded, Inbound)
    assert decoded.payload == BLOCK
    assert decoded.properties == (("alg", "ed25519"), ("kid", "k"))
    assert decode_inbound(decoded) == decoded


def test_plan_batch_audits_an_undecodable_message_and_judges_the_rest() -> None:
    bad = Inbound(TOPIC, b"junk", ((ENC_PROPERTY, "zstd"),), received_at=1.0)
    unsigned = Inbound(TOPIC, encode_payload(BLOCK, Encoding.ZSTD), ((ENC_PROPERTY, "zstd"),), 1.0)
    batch = plan_batch([bad, unsigned], {}, default_catalogue())
    assert [a.reason for a in batch.audits] == [Reason.MALFORMED, Reason.BAD_SIGNATURE]
    # The second was decoded first: its audit row names the canonical bytes' hash.
    assert batch.audits[1].payload_hash == hashlib.sha256(BLOCK).hexdigest()
