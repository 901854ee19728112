"""specs.wirejson.is_number and is_count: what every gz/1 decoder takes as a number or a count."""

from __future__ import annotations

import pytest

from specs.wirejson import is_count, is_number


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
