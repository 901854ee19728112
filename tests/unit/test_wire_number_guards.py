"""specs.wirejson: what every gz/1 decoder takes as a number or a count, and repeated keys."""

from __future__ import annotations

import pytest

from specs.wirejson import WireJsonError, is_count, is_number, load_wire_json


@pytest.mark.parametrize(
    ("value", "number", "count"),
    [
        (0, True, True),
        (7, True, True),
        (-1, True, False),
        (2.5, True, False),
        (True, False, False),  # JSON true parses to a bool, which Python counts as an int
        (False, False, False),
        (float("inf"), False, False),
        (float("nan"), False, False),
        ("1", False, False),
        (None, False, False),
    ],
)
def test_bools_strings_and_non_finite_values_are_neither(
    value: object, number: bool, count: bool
) -> None:
    assert (is_number(value), is_count(value)) == (number, count)


@pytest.mark.parametrize(
    "payload",
    [
        b'{"seq":1,"seq":2}',
        b'{"records":[{"value":1.0,"value":2.0}]}',
        b'{"a":{"b":1},"a":{"b":1}}',  # the same value twice is still two statements
    ],
)
def test_a_key_given_twice_in_one_object_is_refused(payload: bytes) -> None:
    """Found by a hostile tester: json.loads keeps the last of two equal keys, another parser
    the first, so signed bytes with a repeated key say two things; they were taken."""
    with pytest.raises(WireJsonError, match="given twice"):
        load_wire_json(payload)


def test_equal_keys_in_different_objects_are_not_repeats() -> None:
    assert load_wire_json(b'{"a":{"v":1},"b":{"v":2},"c":[{"v":3},{"v":4}]}') == {
        "a": {"v": 1},
        "b": {"v": 2},
        "c": [{"v": 3}, {"v": 4}],
    }
