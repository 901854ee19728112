"""How a payload travels compressed: the `enc` user property of gz/1 (DESIGN section 5).

Hashes, signatures, the chain, the outbox and the collector's storage all hold the canonical
bytes; only the MQTT payload in between may be compressed. The publisher names the encoding in
the MQTT 5 user property `enc`; without it the payload is the canonical bytes themselves (what
agents before `enc` send), so `decode_payload` always gives back what the signature covers.

Encodings (one zstd frame each, as RFC 8878 defines it, without a checksum: the signature
covers the decoded bytes):

* `zstd`: plain zstd.
* `zstd-d1`: zstd with the shipped dictionary `d1` (specs/zstd_d1.py, also
  specs/examples/zstd-d1.dict; SHA-256 pinned below), no dictionary id in the frame. A
  14-reading block shrinks to ~27 bytes a reading against ~43 with plain zstd.

Receivers refuse, before decompressing anything: an unknown `enc`, a frame that does not say
its decoded size or says more than `MAX_DECODED_BYTES` (a zip bomb costs nothing to send and
is checked before the signature, which covers the decoded bytes), data after the frame.
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
from collections.abc import Sequence
from typing import Final

import zstandard

ENC_PROPERTY: Final = "enc"
# The most a payload may decode to: 20x the largest block the agent seals (a 4,000-reading
# backfill block is ~800 KB). A larger canonical payload is sent as it is (no `enc`).
MAX_DECODED_BYTES: Final = 16 * 1024 * 1024
LEVEL: Final = 3  # zstd level: levels 9-19 save 0-10 % more for 3-20x the agent's CPU
D1_SHA256: Final = "7031cdf786b3e5a9fac9bd3eb7c49ae6aec82b5cb5ea4c32f6af81ff3ee78aba"
# Above this size the dictionary stops paying (500-reading blocks: 14.6 B/reading with it,
# 14.4 without), so `zstd-d1` is sent only for payloads up to here and `zstd` above.
D1_UP_TO: Final = 32 * 1024


class Encoding(enum.StrEnum):
    """The values of the `enc` user property."""

    ZSTD = "zstd"
    ZSTD_D1 = "zstd-d1"


class EncodingError(ValueError):
    """A payload cannot be decoded as its `enc` says (the reason is the message)."""


@functools.cache
def _d1() -> zstandard.ZstdCompressionDict:
    from specs.zstd_d1 import DICTIONARY_B64  # noqa: PLC0415 - 8 KiB, only when used

    raw = base64.b64decode(DICTIONARY_B64)
    if hashlib.sha256(raw).hexdigest() != D1_SHA256:
        raise RuntimeError("specs/zstd_d1.py is not the gz/1 dictionary d1")
    return zstandard.ZstdCompressionDict(raw)


@functools.cache
def _compressor(encoding: Encoding) -> zstandard.ZstdCompressor:
    dictionary = _d1() if encoding is Encoding.ZSTD_D1 else None
    return zstandard.ZstdCompressor(
        level=LEVEL, dict_data=dictionary, write_checksum=False, write_dict_id=False
    )


@functools.cache
def _decompressor(encoding: Encoding) -> zstandard.ZstdDecompressor:
    dictionary = _d1() if encoding is Encoding.ZSTD_D1 else None
    return zstandard.ZstdDecompressor(dict_data=dictionary, max_window_size=MAX_DECODED_BYTES)


def choose_encoding(payload: bytes, preferred: Encoding | None) -> Encoding | None:
    """The encoding a payload goes out in when the agent is set to `preferred` (None: as is).

    `zstd-d1` falls back to plain `zstd` past D1_UP_TO; anything past MAX_DECODED_BYTES goes
    as it is, since no receiver would take it compressed.
    """
    if preferred is None or len(payload) > MAX_DECODED_BYTES:
        return None
    if preferred is Encoding.ZSTD_D1 and len(payload) > D1_UP_TO:
        return Encoding.ZSTD
    return preferred


def encode_payload(payload: bytes, encoding: Encoding | None) -> bytes:
    """The bytes that travel for `payload` in `encoding` (None: the payload itself)."""
    if encoding is None:
        return payload
    return _compressor(encoding).compress(payload)


def encoding_properties(encoding: Encoding | None) -> list[tuple[str, str]]:
    """The user properties that name `encoding` (none for the identity)."""
    return [] if encoding is None else [(ENC_PROPERTY, encoding.value)]


def encoding_of(properties: Sequence[tuple[str, str]]) -> Encoding | None:
    """The encoding named by the user properties; EncodingError for an unknown or repeated one."""
    named = [value for name, value in properties if name == ENC_PROPERTY]
    if not named:
        return None
    if len(named) > 1:
        raise EncodingError(f"user property {ENC_PROPERTY!r} is given {len(named)} times")
    try:
        return Encoding(named[0])
    except ValueError:
        raise EncodingError(f"encoding {named[0][:40]!r} is unknown") from None


def decode_payload(
    payload: bytes, encoding: Encoding | None, *, limit: int = MAX_DECODED_BYTES
) -> bytes:
    """The canonical bytes `payload` encodes; EncodingError (with why) when it cannot be one."""
    if encoding is None:
        return payload
    try:
        declared = zstandard.frame_content_size(payload)
    except zstandard.ZstdError:
        raise EncodingError(f"{encoding} payload is not a zstd frame") from None
    if declared < 0:
        raise EncodingError(f"{encoding} frame does not declare its decoded size")
    if declared > limit:
        raise EncodingError(f"{encoding} frame would decode to {declared} bytes, over {limit}")
    try:
        decoded = _decompressor(encoding).decompress(payload, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise EncodingError(f"{encoding} payload does not decode: {exc}") from None
    if len(decoded) != declared:  # zstd checks this; kept explicit since the cap relies on it
        raise EncodingError(f"{encoding} frame decoded to {len(decoded)}, not {declared} bytes")
    return decoded
