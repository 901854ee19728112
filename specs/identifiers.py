"""Identifier rules of the wire contract (DESIGN section 5).

Every checker raises `IdentifierError` with a message fit to show a province admin.
"""

from __future__ import annotations

import re

# GB 32100-2015: the 31 characters of the unified social credit code (no I, O, S, V, Z).
_CREDIT_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_DISTRICT = re.compile(r"^[1-9][0-9]{5}$")
_GATEWAY = re.compile(r"^(?P<enterprise>[0-9A-Z]{18})-GW(?P<number>[0-9]{2})$")
_POINT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_MINE_CODE = re.compile(r"^[0-9]{9}$")


class IdentifierError(ValueError):
    """An identifier breaks its rule."""


def credit_code_check_character(first17: str) -> str:
    """Return the GB 32100 check character for the first 17 characters of a credit code."""
    if len(first17) != len(_CREDIT_WEIGHTS):
        raise IdentifierError("need exactly 17 characters to compute a check character")
    total = 0
    for char, weight in zip(first17, _CREDIT_WEIGHTS, strict=True):
        index = _CREDIT_CHARSET.find(char)
        if index < 0:
            raise IdentifierError(f"character {char!r} is not allowed in a credit code")
        total += index * weight
    return _CREDIT_CHARSET[(31 - total % 31) % 31]


def check_enterprise_code(code: str) -> str:
    """Validate an 18-character 统一社会信用代码 including its check character."""
    if len(code) != 18:  # noqa: PLR2004 - the standard's fixed length
        raise IdentifierError(f"enterprise code must have 18 characters, got {len(code)}")
    bad = [c for c in code if c not in _CREDIT_CHARSET]
    if bad:
        raise IdentifierError(f"enterprise code has character {bad[0]!r}, not allowed by GB 32100")
    expected = credit_code_check_character(code[:17])
    if code[17] != expected:
        raise IdentifierError(
            f"enterprise code check character is {code[17]!r}, GB 32100 gives {expected!r}"
        )
    return code


def check_district_code(code: str) -> str:
    """Validate a 6-digit GB/T 2260 district code."""
    if not _DISTRICT.fullmatch(code):
        raise IdentifierError(f"district must be a 6-digit GB/T 2260 code, got {code!r}")
    return code


def check_gateway_code(code: str, enterprise: str) -> str:
    """Validate a gateway code `{enterprise}-GW{NN}` belonging to `enterprise`."""
    match = _GATEWAY.fullmatch(code)
    if not match:
        raise IdentifierError(f"gateway must look like {{enterprise}}-GW01, got {code!r}")
    if match["enterprise"] != enterprise:
        raise IdentifierError(f"gateway {code!r} does not start with enterprise {enterprise!r}")
    return code


def check_point_code(code: str) -> str:
    """Validate a point code: 1-64 ASCII letters, digits, `-`, `_`, `.`, the first no mark.

    The one rule of the contract: the agent's site map is checked by it, and the collector
    refuses a block or meta naming a point outside it (collector.ingest.judge).
    """
    if not _POINT.fullmatch(code):
        raise IdentifierError(
            f"point code {code!r} must be 1-64 letters, digits, '-', '_' or '.',"
            " starting with a letter or digit"
        )
    return code


def check_mine_code(code: str) -> str:
    """Validate a 9-digit coal mine code."""
    if not _MINE_CODE.fullmatch(code):
        raise IdentifierError(f"coal mine code must have 9 digits, got {code!r}")
    return code
