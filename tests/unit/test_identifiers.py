"""Identifier rules of the wire contract: credit codes, districts, gateways, points, mines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from specs.identifiers import (
    IdentifierError,
    check_district_code,
    check_enterprise_code,
    check_gateway_code,
    check_mine_code,
    check_point_code,
    credit_code_check_character,
)

CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
# Real, published unified social credit codes (and the example site's code).
VALID_CODES = ("914403001922038216", "91350100M000100Y43", "91360100MA35GW001H")


@pytest.mark.parametrize("code", VALID_CODES)
def test_real_credit_codes_pass(code: str) -> None:
    assert check_enterprise_code(code) == code
    assert credit_code_check_character(code[:17]) == code[17]


@pytest.mark.parametrize("code", VALID_CODES)
def test_every_single_character_change_is_caught(code: str) -> None:
    for position in range(18):
        for char in CHARSET.replace(code[position], ""):
            mutated = code[:position] + char + code[position + 1 :]
            with pytest.raises(IdentifierError, match="check character"):
                check_enterprise_code(mutated)


@pytest.mark.parametrize("code", VALID_CODES)
def test_swapped_neighbours_are_caught(code: str) -> None:
    for position in range(16):
        a, b = code[position], code[position + 1]
        if a != b:
            swapped = code[:position] + b + a + code[position + 2 :]
            with pytest.raises(IdentifierError):
                check_enterprise_code(swapped)


@given(st.text(alphabet=CHARSET, min_size=17, max_size=17))
def test_a_computed_check_character_always_validates(first17: str) -> None:
    code = first17 + credit_code_check_character(first17)
    assert check_enterprise_code(code) == code


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("91350100M000100Y4", "18 characters"),
        ("91350100M000100Y433", "18 characters"),
        ("91350100m000100Y43", "not allowed"),
        ("91350100MO00100Y43", "not allowed"),  # O is not in the GB 32100 character set
        ("91350100M000100Y4I", "not allowed"),
        ("", "18 characters"),
    ],
)
def test_malformed_credit_codes(code: str, fragment: str) -> None:
    with pytest.raises(IdentifierError, match=fragment):
        check_enterprise_code(code)


@pytest.mark.parametrize("code", ["360100", "110101", "654326"])
def test_districts(code: str) -> None:
    assert check_district_code(code) == code


@pytest.mark.parametrize("code", ["060100", "36010", "3601000", "36010a", "", "三六〇一〇〇"])
def test_bad_districts(code: str) -> None:
    with pytest.raises(IdentifierError, match="6-digit"):
        check_district_code(code)


def test_gateways() -> None:
    enterprise = VALID_CODES[2]
    assert check_gateway_code(f"{enterprise}-GW01", enterprise) == f"{enterprise}-GW01"
    assert check_gateway_code(f"{enterprise}-GW99", enterprise) == f"{enterprise}-GW99"
    with pytest.raises(IdentifierError, match="does not start with"):
        check_gateway_code(f"{VALID_CODES[0]}-GW01", enterprise)
    for bad in (f"{enterprise}-GW1", f"{enterprise}-gw01", f"{enterprise}GW01", "GW01"):
        with pytest.raises(IdentifierError, match="GW01"):
            check_gateway_code(bad, enterprise)


@pytest.mark.parametrize("code", ["T001-LT-01", "a", "S01.GX_01", "X" * 64])
def test_point_codes(code: str) -> None:
    assert check_point_code(code) == code


@pytest.mark.parametrize("code", ["", "-T1", ".T1", "T 1", "T1/2", "X" * 65, "液位1"])
def test_bad_point_codes(code: str) -> None:
    with pytest.raises(IdentifierError, match="point code"):
        check_point_code(code)


def test_mine_codes() -> None:
    assert check_mine_code("360100001") == "360100001"
    for bad in ("36010000", "3601000011", "36010000a", ""):
        with pytest.raises(IdentifierError, match="9 digits"):
            check_mine_code(bad)
