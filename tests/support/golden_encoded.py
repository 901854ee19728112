"""Compressed-payload vectors of specs/examples (`enc`, specs.encoding) for tests.support.golden.

Each accepted vector is a signed block of the set as it travels compressed: its payload file is
the exact MQTT payload, its `enc` the user property beside it, and it decodes to the block's
canonical `.json`, whose `.sig.json` is the signature that travels with it (signatures cover
the decoded bytes). The reject vectors must be refused before any signature check.

zstd does not promise the same compressed bytes from one library version to the next, and any
frame that decodes to the canonical bytes is as good. So the generator keeps a shipped frame
while it still does what its vector says (decodes to its block, or is refused), and compresses
afresh only when there is none: regenerating stays byte-identical whatever zstandard is
installed.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import zstandard

from specs.encoding import (
    D1_SHA256,
    MAX_DECODED_BYTES,
    Encoding,
    EncodingError,
    decode_payload,
    encode_payload,
    encoding_of,
    values_layout,
)
from specs.zstd_d1 import DICTIONARY_B64

DICTIONARY_FILE: Final = "zstd-d1.dict"


@dataclass(frozen=True, slots=True)
class EncodedVector:
    """One compressed payload and what must happen to it."""

    name: str
    payload: str  # file holding the exact MQTT payload
    enc: str  # the `enc` user property sent with it
    source: str  # the canonical block vector it is made from (and decodes to, if accepted)
    expect: str = "accept"
    why: str | None = None


ENCODED: Final = (
    EncodedVector("block-whp-1.zstd-d1", "block-whp-1.zstd-d1.bin", "zstd-d1", "block-whp-1"),
    EncodedVector("block-whp-2.zstd", "block-whp-2.zstd.bin", "zstd", "block-whp-2"),
    EncodedVector("block-whp-3.zstd-d1v", "block-whp-3.zstd-d1v.bin", "zstd-d1v", "block-whp-3"),
    EncodedVector(
        "reject-enc-bomb",
        "reject-enc-bomb.zstd.bin",
        "zstd",
        "block-whp-1",
        "reject",
        f"a zstd frame declaring {MAX_DECODED_BYTES + 1} bytes, over the 16 MiB cap: refuse"
        " before decompressing",
    ),
    EncodedVector(
        "reject-enc-unknown",
        "block-whp-1.zstd-d1.bin",
        "zstd-d9",
        "block-whp-1",
        "reject",
        "enc 'zstd-d9' is not a known encoding (zstd, zstd-d1): refuse, never guess",
    ),
    EncodedVector(
        "reject-enc-d1v-places",
        "reject-enc-d1v-places.zstd-d1v.bin",
        "zstd-d1v",
        "block-whp-3",
        "reject",
        "a zstd-d1v layout of block-whp-3 that declares one value more than its text has places"
        " for: it does not decode",
    ),
    EncodedVector(
        "reject-enc-truncated",
        "reject-enc-truncated.zstd-d1.bin",
        "zstd-d1",
        "block-whp-1",
        "reject",
        "the zstd-d1 frame of block-whp-1 cut short by 8 bytes: it does not decode",
    ),
)


def _fresh(vector: EncodedVector, canonical: bytes) -> bytes:
    if vector.name == "reject-enc-bomb":
        return zstandard.ZstdCompressor(level=19).compress(b"\0" * (MAX_DECODED_BYTES + 1))
    if vector.name == "reject-enc-d1v-places":
        layout = bytearray(values_layout(canonical))
        layout[:4] = (int.from_bytes(layout[:4], "big") + 1).to_bytes(4, "big")
        layout[4:4] = struct.pack(">d", 1.5)
        dictionary = zstandard.ZstdCompressionDict(base64.b64decode(DICTIONARY_B64))
        compressor = zstandard.ZstdCompressor(dict_data=dictionary, write_dict_id=False)
        return compressor.compress(bytes(layout))
    frame = encode_payload(canonical, Encoding(vector.enc))
    return frame[:-8] if vector.name == "reject-enc-truncated" else frame


def _still_good(vector: EncodedVector, frame: bytes, canonical: bytes) -> bool:
    try:
        return decode_payload(frame, encoding_of([("enc", vector.enc)])) == canonical and (
            vector.expect == "accept"
        )
    except EncodingError:
        return vector.expect == "reject"


def encoded_files(
    canonical: Mapping[str, bytes], shipped: Path
) -> tuple[dict[str, bytes], list[dict[str, object]]]:
    """The files (by name) and manifest entries of the encoded vectors.

    `canonical` maps vector names to their canonical payloads; frames already in `shipped`
    are kept while they still do what their vector says.
    """
    files = {DICTIONARY_FILE: base64.b64decode(DICTIONARY_B64)}
    entries: list[dict[str, object]] = []
    for vector in ENCODED:
        source = canonical[vector.source]
        if vector.payload not in files:
            path = shipped / vector.payload
            kept = path.read_bytes() if path.is_file() else None
            usable = kept is not None and _still_good(vector, kept, source)
            files[vector.payload] = kept if usable and kept is not None else _fresh(vector, source)
        entries.append(
            {
                "name": vector.name,
                "payload": vector.payload,
                "enc": vector.enc,
                "decodes_to": f"{vector.source}.json" if vector.expect == "accept" else None,
                "signature": f"{vector.source}.sig.json" if vector.expect == "accept" else None,
                "expect": vector.expect,
                "why": vector.why,
            }
        )
    return files, entries


def dictionaries() -> dict[str, dict[str, str]]:
    """The manifest's `dictionaries` entry: file and SHA-256 of each shipped dictionary."""
    return {"zstd-d1": {"file": DICTIONARY_FILE, "sha256": D1_SHA256}}
