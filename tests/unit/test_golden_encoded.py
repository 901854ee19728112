"""The compressed-payload golden vectors (manifest `encoded`), checked as a third party would.

With nothing but the manifest, the dictionary file, the public key and a zstd library: each
accepted payload decodes (with `zstd-d1.dict` for `zstd-d1`) to its block's canonical bytes,
whose signature and hash are the block's sidecar; each rejected one is refused for its reason.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import pytest
import zstandard

from specs.block import block_hash, decode_block
from specs.encoding import EncodingError, decode_payload, encoding_of
from specs.signing import Signature, load_verify_key
from tests.support import golden

EXAMPLES = golden.EXAMPLES
MANIFEST: dict[str, Any] = json.loads((EXAMPLES / "manifest.json").read_text(encoding="utf-8"))
ENCODED: list[dict[str, Any]] = MANIFEST["encoded"]
ACCEPTED = [v for v in ENCODED if v["expect"] == "accept"]
REJECTED = [v for v in ENCODED if v["expect"] == "reject"]


def _name(vector: dict[str, Any]) -> str:
    return str(vector["name"])


def _bytes(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def _third_party_decode(vector: dict[str, Any]) -> bytes:
    """Decode with the zstd library and the published dictionary only (not specs.encoding)."""
    dictionary = None
    if vector["enc"] in {"zstd-d1", "zstd-d1v"}:
        entry = MANIFEST["dictionaries"]["zstd-d1"]
        raw = _bytes(entry["file"])
        assert hashlib.sha256(raw).hexdigest() == entry["sha256"]
        dictionary = zstandard.ZstdCompressionDict(raw)
    decompressor = zstandard.ZstdDecompressor(dict_data=dictionary)
    data = decompressor.decompress(_bytes(vector["payload"]), allow_extra_data=False)
    if vector["enc"] != "zstd-d1v":
        return data
    # The layout as the README states it: count, doubles, text with a NUL for each.
    count = int.from_bytes(data[:4], "big")
    values = struct.unpack_from(f">{count}d", data, 4)
    parts = data[4 + 8 * count :].split(b"\0")
    assert len(parts) == count + 1
    out = parts[0]
    for value, part in zip(values, parts[1:], strict=True):
        out += repr(value).encode() + part
    return out


@pytest.mark.parametrize("vector", ACCEPTED, ids=_name)
def test_accepted_payload_decodes_to_the_signed_canonical_block(vector: dict[str, Any]) -> None:
    canonical = _bytes(vector["decodes_to"])
    assert _third_party_decode(vector) == canonical
    assert decode_payload(_bytes(vector["payload"]), encoding_of([("enc", vector["enc"])])) == (
        canonical
    )
    side = json.loads(_bytes(vector["signature"]))
    assert side["hash"] == block_hash(canonical)
    key = MANIFEST["keys"][side["key"]]
    load_verify_key(_bytes(key["public_key"])).verify(
        Signature(side["alg"], side["kid"], bytes.fromhex(side["sig"])), canonical
    )
    decode_block(canonical)
    assert len(_bytes(vector["payload"])) < len(canonical)


@pytest.mark.parametrize("vector", REJECTED, ids=_name)
def test_rejected_payload_is_refused_before_any_signature_check(vector: dict[str, Any]) -> None:
    assert vector["why"]
    with pytest.raises(EncodingError):
        decode_payload(_bytes(vector["payload"]), encoding_of([("enc", vector["enc"])]))


def test_the_bomb_declares_more_than_the_cap_in_a_small_frame() -> None:
    (bomb,) = [v for v in REJECTED if v["name"] == "reject-enc-bomb"]
    frame = _bytes(bomb["payload"])
    assert len(frame) < 4096
    assert zstandard.frame_content_size(frame) > 16 * 1024 * 1024


def test_every_encoding_and_reason_has_a_vector() -> None:
    assert {v["enc"] for v in ACCEPTED} == {"zstd", "zstd-d1", "zstd-d1v"}
    assert {v["name"] for v in REJECTED} == {
        "reject-enc-bomb",
        "reject-enc-d1v-places",
        "reject-enc-unknown",
        "reject-enc-truncated",
    }


def test_generator_keeps_a_shipped_frame_that_still_decodes(tmp_path: Path) -> None:
    # Another zstd version may compress differently; the shipped frames stay the vectors.
    golden.write(tmp_path)
    for vector in ENCODED:
        assert (tmp_path / vector["payload"]).read_bytes() == _bytes(vector["payload"])
