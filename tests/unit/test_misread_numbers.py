"""YAML 1.1's octal and base-60 readings of plain scalars are found with their key paths."""

from __future__ import annotations

import pytest

from configkit.misread_numbers import misread_numbers
from edge_agent.config.loader import is_site_code


def found(text: str) -> list[tuple[int | None, str]]:
    return [
        (issue.line, issue.path)
        for issue in misread_numbers(text, "site.yaml", is_code=is_site_code)
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 010\n", [(1, "a")]),
        ("a: -017\nb: 1:30\nc: 1:30.5\n", [(1, "a"), (2, "b"), (3, "c")]),
        (
            "a: {b: [1, 010, {c: 07}], d: 0x10, e: 0o10, f: 0b10, g: 1_000}\n",
            [(1, "a.b[1]"), (1, "a.b[2].c")],
        ),
        ("- - 010\n  - 2\n- x: 010\n", [(1, "[0][0]"), (3, "[1].x")]),
        # Quoted, tagged, text to YAML (08, 0:30), one zero, keys: what they say.
        ("a: '010'\nb: \"010\"\nc: !!int 010\nd: 08\ne: 0:30\nf: 0\n010: x\n", []),
        # An anchor is found where it is written; its aliases and merges are the same value.
        ("a: &n 010\nb: *n\nc: {<<: {d: 1}, e: 010}\n", [(1, "a"), (3, "c.e")]),
        # A complex key is walked but the value after it keeps its place.
        ("? [010]\n: 010\nz: 010\n", [(1, "?[0]"), (2, "?"), (3, "z")]),
        ("a: |\n  010\nb: >\n  1:30\n", []),  # block text is text
        # Codes are text: any number YAML makes of one that is not its own digits is named.
        (
            (
                "site: {district: +360100, enterprise: 0b1}\nalarms: [{points: [0x1F, P2, 12]}]\n"
                "devices: [{unit_id: 0x10, points: [{point: 1_0, limit_point: 12}]}]\n"
            ),
            [
                (1, "site.district"),
                (1, "site.enterprise"),
                (2, "alarms[0].points[0]"),
                (3, "devices[0].points[0].point"),
            ],
        ),
    ],
)
def test_misread_numbers_are_found_at_their_key(text: str, expected: list[tuple[int, str]]) -> None:
    assert found(text) == expected


def test_a_document_that_does_not_parse_ends_the_walk_without_an_error() -> None:
    # parse_yaml names the YAML error; what the walk found before it may come too.
    assert found("a: [010\n") in ([], [(1, "a[0]")])
    assert found("a: b: c\n") == []
