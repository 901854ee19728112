"""An encoding measured for G9 but not shipped: blocks laid out by columns.

`columns(payload)` lays a block out by columns before zstd-d1: the header text, one key
signature per record, each key's raw JSON texts one per line (points, quotas, times, units...
each next to its kind: point codes in sequence, one time per device cycle), and the `value`
floats as 8-byte doubles (a tag per record says float or not). A size measurement only (no
decoder exists): a wire encoding would have to give back the exact canonical bytes, which a
column layout can (raw JSON slices) at the cost of a format every verifier must implement.
Moving only the values out of the text is the shipped `zstd-d1v` (specs/encoding.py).

Measured (bench/wire.py, corpus blocks, after zstd-d1): 500 readings: zstd-d1v 12.6, columns
12.0 B/reading; 14 readings: 29.1 and 31.7. On a real 1,000-tag site's blocks (float32
registers) columns gave 7.7 against zstd-d1v's 9.0: not worth a second layout.
"""

from __future__ import annotations

import json
import struct

from specs.encoding import Encoding, encode_payload


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


def compressed_size(transformed: bytes) -> int:
    """Bytes of a transformed block after zstd-d1 (as the shipped encoding would send it)."""
    return len(encode_payload(transformed, Encoding.ZSTD_D1))
