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
* `zstd-d1v`: the block with its float `value`s moved out of the text, then `zstd-d1`. The
  layout: the count N (4 bytes, big-endian), N IEEE 754 doubles (8 bytes each, big-endian),
  then the block's text with each of those values' number replaced by one NUL byte (which
  canonical JSON never holds). Decoding puts back, in order, each double's shortest
  round-trip text (the form the canonical encoding writes). Only a `"value":` member whose
  number is exactly that text of a double may move (integers and anything else stay as text);
  the agent moves those of 8 characters or more (shorter ones are cheaper as text).
  Instruments read float32 registers, whose doubles print with up to 17 noisy digits but are 8
  bytes with 29 zero bits: a real 1,000-tag site's 500-reading blocks take 9.0 bytes a
  reading against 16.7 with `zstd-d1` (bench/wire.py).

Receivers refuse, before decompressing anything: an unknown `enc`, a frame that does not say
its decoded size or says more than `MAX_DECODED_BYTES` (a zip bomb costs nothing to send and
is checked before the signature, which covers the decoded bytes), data after the frame.
"""

from __future__ import annotations

import base64
import enum
import functools
import hashlib
import math
import re
import struct
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
    ZSTD_D1V = "zstd-d1v"


class EncodingError(ValueError):
    """A payload cannot be decoded as its `enc` says (the reason is the message)."""


@functools.cache
def _d1() -> zstandard.ZstdCompressionDict:
    from specs.zstd_d1 import DICTIONARY_B64  # noqa: PLC0415 - 8 KiB, only when used

    raw = base64.b64decode(DICTIONARY_B64)
    if hashlib.sha256(raw).hexdigest() != D1_SHA256:
        raise RuntimeError("specs/zstd_d1.py is not the gz/1 dictionary d1")
    return zstandard.ZstdCompressionDict(raw)


# A `"value":` member with a JSON number that ends the member. It is a record's member (not
# text inside a string, where a quote is escaped) when `{` or `,` comes before it: checked
# apart, since a pattern that starts with that class is tried at every comma (8x slower).
_VALUE: Final = re.compile(
    rb'"value":(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)(?=[,}])'
)
_MEMBER_START: Final = frozenset((b",", b"{"))
_NAME: Final = b'"value":'
_MOVED: Final = _NAME + b"\x00"
_COUNT: Final = struct.Struct(">I")
_MOVE_FROM: Final = 8  # characters: the encoder's choice, the decoder fills what it finds


def values_layout(payload: bytes) -> bytes:
    """The `zstd-d1v` layout of `payload` before compression (see the module docstring).

    One `split` finds every `"value":` number at C speed (the text between them comes back
    as it was, the pattern without the name); the loop only judges each number. The char
    before a match is the last of the text before it (never empty past the first: the
    lookahead leaves the `,` or `}` after a number in the next text).
    """
    parts = _VALUE.split(payload)  # text, number, text, number, ..., text
    values: list[float] = []
    first = parts[0][-1:] or payload[-1:]  # a match at 0: the char "before" is the last one
    for at in range(1, len(parts), 2):
        text = parts[at]
        # Short numbers (12.5) are cheaper as text; an integer, or a form the decoder would
        # not give back, must stay as it is.
        if len(text) >= _MOVE_FROM and (parts[at - 1][-1:] if at > 1 else first) in _MEMBER_START:
            value = float(text)
            if repr(value).encode("ascii") == text:
                values.append(value)
                parts[at] = _MOVED
                continue
        parts[at] = _NAME + text
    return _COUNT.pack(len(values)) + struct.pack(f">{len(values)}d", *values) + b"".join(parts)


def _values_back(data: bytes, limit: int) -> bytes:
    """The canonical bytes from the `zstd-d1v` layout; EncodingError when it is not one.

    Built into one buffer checked against `limit` as it grows, with no object per value: a
    16 MiB layout of two million tiny values must cost neither memory nor a list of pieces.
    """
    if len(data) < _COUNT.size:
        raise EncodingError("zstd-d1v payload is shorter than its value count")
    (count,) = _COUNT.unpack_from(data)
    start = _COUNT.size + 8 * count
    if start > len(data):
        raise EncodingError(f"zstd-d1v payload is too short for {count} values")
    places = data.count(b"\x00", start)
    if places != count:
        raise EncodingError(f"zstd-d1v text has {places} places for {count} values")
    view = memoryview(data)
    decoded = bytearray()
    position = start
    for (value,) in struct.iter_unpack(">d", view[_COUNT.size : start]):
        if not math.isfinite(value):
            raise EncodingError("zstd-d1v value is not a finite number")
        place = data.index(b"\x00", position)
        decoded += view[position:place]
        decoded += repr(value).encode("ascii")
        position = place + 1
        if len(decoded) > limit:
            raise EncodingError(f"zstd-d1v payload would decode to more than {limit} bytes")
    decoded += view[position:]
    if len(decoded) > limit:
        raise EncodingError(f"zstd-d1v payload would decode to more than {limit} bytes")
    return bytes(decoded)


@functools.cache
def _compressor(encoding: Encoding) -> zstandard.ZstdCompressor:
    dictionary = None if encoding is Encoding.ZSTD else _d1()
    return zstandard.ZstdCompressor(
        level=LEVEL, dict_data=dictionary, write_checksum=False, write_dict_id=False
    )


@functools.cache
def _decompressor(encoding: Encoding) -> zstandard.ZstdDecompressor:
    dictionary = None if encoding is Encoding.ZSTD else _d1()
    return zstandard.ZstdDecompressor(dict_data=dictionary, max_window_size=MAX_DECODED_BYTES)


def choose_encoding(payload: bytes, preferred: Encoding | None) -> Encoding | None:
    """The encoding a payload goes out in when the agent is set to `preferred` (None: as is).

    `zstd-d1` falls back to plain `zstd` past D1_UP_TO; anything past MAX_DECODED_BYTES goes
    as it is, since no receiver would take it compressed.
    """
    if preferred is None or len(payload) > MAX_DECODED_BYTES:
        return None
    if preferred is Encoding.ZSTD_D1V and b"\x00" in payload:
        return Encoding.ZSTD_D1  # never in canonical JSON; its layout could not carry one
    if preferred is Encoding.ZSTD_D1 and len(payload) > D1_UP_TO:
        return Encoding.ZSTD
    return preferred


def encode_payload(payload: bytes, encoding: Encoding | None) -> bytes:
    """The bytes that travel for `payload` in `encoding` (None: the payload itself)."""
    if encoding is None:
        return payload
    if encoding is Encoding.ZSTD_D1V:
        if b"\x00" in payload:  # choose_encoding never picks zstd-d1v for such a payload
            raise EncodingError("zstd-d1v cannot carry a payload holding a NUL byte")
        payload = values_layout(payload)
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
    if encoding is Encoding.ZSTD_D1V:
        return _values_back(decoded, limit)
    return decoded
