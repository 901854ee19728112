"""Pure parsing of ASCII instrument frames: checksum, text, and a value per point.

Each point has a regular expression with a named group ``value``; the first match anywhere in
the line (``re.search``) gives the value, so ``H2S=(?P<value>-?[0-9.]+)`` finds 12.3 in
``H2S=12.3 ppm``. A whole-line fault (checksum mismatch, bytes that are not text) fails every
point of the line; a pattern that does not match fails only its own point.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from drivers.base import DecodeError
from drivers.serial.checksum import ChecksumSpec, split_checksum

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["LinePoint", "ParsedLine", "decode_line", "parse_line", "parse_value"]

_SHOWN = 40  # characters of a line quoted in an error text


@dataclass(frozen=True, slots=True)
class LinePoint:
    """One value an ASCII instrument reports, found by a pattern with a ``value`` group.

    Raises:
        ValueError: (on construction) a pattern that does not compile or has no ``value`` group.
    """

    key: str
    pattern: str
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            regex = re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"{self.key}: pattern {self.pattern!r}: {exc}") from exc
        if "value" not in regex.groupindex:
            raise ValueError(f"{self.key}: pattern {self.pattern!r} has no (?P<value>...) group")
        object.__setattr__(self, "regex", regex)


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """What one frame says about each point: a value, or why there is none."""

    values: Mapping[str, float]
    errors: Mapping[str, str]


def decode_line(frame: bytes, checksum: ChecksumSpec | None = None, encoding: str = "ascii") -> str:
    """Verify the frame's checksum (if configured) and decode its payload to text.

    Raises:
        DecodeError: checksum missing or wrong, or bytes that are not valid `encoding`.
    """
    payload = split_checksum(frame, checksum) if checksum is not None else frame
    try:
        return payload.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DecodeError(f"not {encoding} text at byte {exc.start}: {frame[:_SHOWN]!r}") from None


def parse_value(text: str, point: LinePoint) -> float:
    """Find the point's value in a line of text.

    Raises:
        DecodeError: the pattern does not match, or its ``value`` group is not a number.
    """
    match = point.regex.search(text)
    if match is None:
        raise DecodeError(f"pattern {point.pattern!r} does not match {text[:_SHOWN]!r}")
    found = match.group("value")
    if found is None:  # an optional group that took no part in the match
        raise DecodeError(f"pattern {point.pattern!r} matched without a value in {text!r}")
    try:
        return float(found)
    except ValueError:
        raise DecodeError(f"{found[:_SHOWN]!r} is not a number") from None


def parse_line(
    frame: bytes,
    points: Sequence[LinePoint],
    *,
    checksum: ChecksumSpec | None = None,
    encoding: str = "ascii",
) -> ParsedLine:
    """Parse one frame for every point.

    Raises:
        DecodeError: a whole-line fault (checksum, encoding); per-point misses are returned.
    """
    text = decode_line(frame, checksum, encoding)
    values: dict[str, float] = {}
    errors: dict[str, str] = {}
    for point in points:
        try:
            values[point.key] = parse_value(text, point)
        except DecodeError as exc:
            errors[point.key] = str(exc)
    return ParsedLine(values, errors)
