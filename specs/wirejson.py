"""Strict JSON for everything that arrives over the wire, and canonical JSON for what leaves.

`json.loads` alone lets through what later code chokes on: integers too large for a 64-bit
column (or for Python's int-parsing limit), 1e400 (becomes inf), lone UTF-16 surrogates that
no database can store, and nesting deep enough to hit the recursion limit. This loader turns
all of those into one error type at the boundary. It also refuses a key given twice in one
object: `json.loads` keeps the last, other parsers the first, so signed bytes with a repeated
key would say two things (canonical JSON never repeats one).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Final, TypeGuard

_MAX_INT_DIGITS: Final = 19  # anything longer cannot be a signed 64-bit value
_SURROGATE_ESCAPE: Final = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def canonical_json(value: object) -> str:
    """The reference canonical encoding: sorted keys, no spaces, non-ASCII as is, no NaN.

    Every byte that is signed or hashed (blocks, ACKs, meta, status) is this text in UTF-8;
    faster encoders (specs.records.record_json) must give exactly the same text.
    """
    return json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False
    )


# The string encoder json.dumps(..., ensure_ascii=False) itself uses (the C one when built):
# quotes and escapes ", \ and control characters, leaves everything else as it is.
json_string: Final[Callable[[str], str]] = encode_basestring


def json_number(value: float | None) -> str:
    """A reading's value as canonical_json writes it (float repr, int repr, null)."""
    if value is None:
        return "null"
    if value.__class__ is float:
        text = repr(value)  # float.__repr__, as json.dumps writes a float
        if text in _NOT_FINITE:
            raise ValueError("Out of range float values are not JSON compliant: " + text)
        return text
    return canonical_json(value)  # int, bool or a subclass: whatever json.dumps says


_NOT_FINITE: Final = frozenset({"nan", "inf", "-inf"})


class WireJsonError(ValueError):
    """A payload is not strict wire JSON."""


def _int(text: str) -> int:
    digits = text.lstrip("-")
    if len(digits) > _MAX_INT_DIGITS:
        raise WireJsonError(f"integer with {len(digits)} digits is out of range")
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise WireJsonError("integer is out of the signed 64-bit range")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise WireJsonError(f"number {text[:20]} is not finite")
    return value


def _constant(text: str) -> float:
    raise WireJsonError(f"{text} is not allowed in wire JSON")


def _object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    body = dict(pairs)
    if len(body) != len(pairs):  # rare: find which key, for the audit row
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise WireJsonError(f"key {key[:40]!r} is given twice in one object")
            seen.add(key)
    return body


def load_wire_json(payload: bytes) -> object:
    """Parse UTF-8 JSON strictly; raise WireJsonError with the reason."""
    # The gz/1 encoder never escapes non-ASCII, so a surrogate escape can only be a lone
    # surrogate or a deliberate detour around that rule: refuse both.
    if _SURROGATE_ESCAPE.search(payload):
        raise WireJsonError("payload escapes a UTF-16 surrogate")
    try:
        text = payload.decode("utf-8")
        return json.loads(
            text,
            parse_int=_int,
            parse_float=_float,
            parse_constant=_constant,
            object_pairs_hook=_object,
        )
    except UnicodeDecodeError as exc:
        raise WireJsonError(f"payload is not UTF-8: {exc}") from None
    except RecursionError:
        raise WireJsonError("payload nests too deeply") from None
    except json.JSONDecodeError as exc:
        raise WireJsonError(f"payload is not JSON: {exc}") from None


def is_number(value: object) -> TypeGuard[int | float]:
    """Whether a parsed value is a finite JSON number: `true` parses to a bool, an int too."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_count(value: object) -> TypeGuard[int]:
    """Whether a parsed value is a JSON integer >= 0 (not `true`, which parses to an int)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def load_message_json(payload: bytes, error: Callable[[str], Exception], prefix: str) -> object:
    """`load_wire_json` for one message kind: its reason raised as `error`, after `prefix`.

    Each gz/1 message has its own format error (AckFormatError, MetaFormatError...), and its
    decoder reports wire JSON it cannot take in those terms.
    """
    try:
        return load_wire_json(payload)
    except WireJsonError as exc:
        raise error(f"{prefix}{exc}") from None
