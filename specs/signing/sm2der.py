"""SM2 facts that need no SM2 library: the curve's order and OID, and the DER signature form.

Kept apart from the backend so that a build without the `ganzhi[sm]` extra can still recognise
an SM2 key (and say how to install the extra), and so that tests can turn another library's raw
`r || s` into the DER form that travels (GM/T 0009 / GB/T 35276: SEQUENCE of two INTEGERs).
"""

from __future__ import annotations

from typing import Final

from specs.signing.errors import BadSignatureError

CURVE_ORDER: Final = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
"""n of the SM2 recommended curve (GM/T 0003.5 / GB/T 32918.5)."""

CURVE_OID_DER: Final = bytes.fromhex("06082a811ccf5501822d")
"""OBJECT IDENTIFIER 1.2.156.10197.1.301 (sm2p256v1), as it appears inside PKCS#8 and SPKI."""

DEFAULT_USER_ID: Final = b"1234567812345678"
"""The signer ID that goes into Z when none is agreed (GM/T 0009, GB/T 35276)."""

_SEQUENCE: Final = 0x30
_INTEGER: Final = 0x02


def _integer(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")  # room for a clear top bit
    return bytes((_INTEGER, len(body))) + body


def encode_signature(r: int, s: int) -> bytes:
    """DER `SEQUENCE { INTEGER r, INTEGER s }`."""
    body = _integer(r) + _integer(s)
    return bytes((_SEQUENCE, len(body))) + body


def _read_integer(data: bytes, at: int) -> tuple[int, int]:
    if at + 2 > len(data) or data[at] != _INTEGER:
        raise BadSignatureError("SM2 signature: INTEGER expected")
    size = data[at + 1]
    body = data[at + 2 : at + 2 + size]
    if size == 0 or size > 33 or len(body) != size:  # noqa: PLR2004 - 32 bytes + sign octet
        raise BadSignatureError("SM2 signature: INTEGER of a bad length")
    if body[0] & 0x80:
        raise BadSignatureError("SM2 signature: negative INTEGER")
    if size > 1 and body[0] == 0 and not body[1] & 0x80:
        raise BadSignatureError("SM2 signature: INTEGER not in its shortest form")
    return int.from_bytes(body, "big"), at + 2 + size


def decode_signature(der: bytes) -> tuple[int, int]:
    """`(r, s)` of a strict DER signature with both in [1, n-1]; BadSignatureError otherwise.

    Strict on purpose: one signature has one encoding, and nothing malformed reaches the C
    library (which reports such input as an internal error rather than a bad signature).
    """
    if len(der) < 2 or der[0] != _SEQUENCE or der[1] != len(der) - 2:  # noqa: PLR2004
        raise BadSignatureError("SM2 signature: not a DER SEQUENCE")
    r, at = _read_integer(der, 2)
    s, at = _read_integer(der, at)
    if at != len(der):
        raise BadSignatureError("SM2 signature: bytes after the two INTEGERs")
    if not (0 < r < CURVE_ORDER and 0 < s < CURVE_ORDER):
        raise BadSignatureError("SM2 signature: r or s out of range")
    return r, s


def is_sm2_key_der(der: bytes) -> bool:
    """Whether a PKCS#8 or SPKI structure names the SM2 curve (no SM2 library needed)."""
    return CURVE_OID_DER in der
