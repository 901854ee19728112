"""Tables for a terminal, aligned by display width: a CJK character takes two cells."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

_SEPARATOR = "  "


def display_width(text: str) -> int:
    """How many terminal cells `text` takes: wide and full-width characters two, marks none."""
    return sum(_char_width(char) for char in text)


def _char_width(char: str) -> int:
    if unicodedata.combining(char):
        return 0
    return 2 if unicodedata.east_asian_width(char) in "WF" else 1


def pad(text: str, width: int) -> str:
    """`text` followed by spaces up to `width` display cells."""
    return text + " " * (width - display_width(text))


def column_widths(rows: Sequence[Sequence[str]]) -> list[int]:
    """The display width of each column: its widest cell."""
    return [max(display_width(row[column]) for row in rows) for column in range(len(rows[0]))]


def render_row(row: Sequence[str], widths: Sequence[int]) -> str:
    """One line of a table: cells padded to their column's width, two spaces apart."""
    cells = (pad(cell, width) for cell, width in zip(row, widths, strict=True))
    return _SEPARATOR.join(cells).rstrip()


def render_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """`header` and `rows` in aligned columns, one line each."""
    table = [header, *rows]
    widths = column_widths(table)
    return "\n".join(render_row(row, widths) for row in table)
