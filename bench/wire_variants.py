"""Encodings measured for G9 but not shipped: what moving the values out of the JSON text buys.

`columns(payload)` lays a block out by columns before zstd-d1: the header text, one key
signature per record, each key's raw JSON texts one per line (points, quotas, times, units...
each next to its kind: point codes in sequence, one time per device cycle), and the `value`
floats as 8-byte doubles (a tag per record says float or not). `values_apart(payload)` keeps
the records as they are and moves only the float values out into the binary column. Both
are size measurements only (no decoder exists): a wire encoding would have to give back the
exact canonical bytes, which a column layout can (raw JSON slices) at the cost of a format
every verifier must implement.

Measured (bench/wire.py, 500-reading blocks of the corpus, zstd-d1 after the transform):
plain 14.7, values apart 12.1, columns 11.7 B/reading; 14-reading blocks: 26.8, 27.1, 31.3 (the
dictionary knows the row layout). The values' own digits are most of what is left: noisy
float32 readings printed with up to 17 digits.
"""

from __future__ import annotations

import json
import re
import struct

from specs.encoding import Encoding, encode_payload

_VALUE = re.compile(rb'([,{])"value":(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)')


def _text(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def columns(payload: bytes) -> bytes:
    """The block by columns, float values as doubles (see the module docstring)."""
    body = json.loads(payload)
    records = body.pop("records")
    signatures: dict[tuple[str, ...], int] = {}
    order = bytearray()
    tags = bytearray()
    texts: dict[str, list[str]] = {}
    floats: list[float] = []
    for record in records:
        keys = tuple(sorted(record))
        order.append(signatures.setdefault(keys, len(signatures)) % 256)
        for key in keys:
            value = record[key]
            if key == "value":
                tags.append(isinstance(value, float))
                if isinstance(value, float):
                    floats.append(value)
                    continue
            texts.setdefault(key, []).append(_text(value))
    doubles = b"".join(struct.pack(">d", value) for value in floats)
    column_text = "\n\n".join("\n".join(column) for column in texts.values())
    return _text(body).encode() + bytes(order) + bytes(tags) + doubles + column_text.encode()


def values_apart(payload: bytes) -> bytes:
    """The block's text with each float `value` replaced by a NUL and moved to a binary column."""
    floats: list[float] = []

    def take(match: re.Match[bytes]) -> bytes:
        text = match.group(2)
        value = float(text)
        if repr(value).encode() != text:
            return match.group(0)
        floats.append(value)
        return match.group(1) + b'"value":\x00'

    rest = _VALUE.sub(take, payload)
    return b"".join(struct.pack(">d", value) for value in floats) + rest


def compressed_size(transformed: bytes) -> int:
    """Bytes of a transformed block after zstd-d1 (as the shipped encoding would send it)."""
    return len(encode_payload(transformed, Encoding.ZSTD_D1))
