r"""Tables for a terminal, aligned by display width: a CJK character takes two cells.

Cells often hold what others wrote (a gateway's command result, a block's epoch, a device's
error message), so a control character in one is shown escaped (`\n`, `\x1b`, `\u202e`),
never sent: raw, a newline drew rows of its own and ESC sequences moved the cursor or erased
lines of the operator's terminal.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Final

_SEPARATOR = "  "
_NAMED: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Bidirectional overrides and isolates reorder what follows them on the line ("Trojan Source").
_BIDI_CONTROLS: Final = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def _shown(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    # Cc: C0, DEL and C1 controls (ESC, CSI...); Zl, Zp: line and paragraph separators.
    if unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI_CONTROLS:
        return f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"  # noqa: PLR2004
    return char


def printable(text: str) -> str:
    """`text` with every control character escaped, so that it only ever shows as text."""
    if text.isprintable():
        return text
    return "".join(_shown(char) for char in text)


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
    """The display width of each column: its widest cell, as shown."""
    return [
        max(display_width(printable(row[column])) for row in rows) for column in range(len(rows[0]))
    ]


def render_row(row: Sequence[str], widths: Sequence[int]) -> str:
    """One line of a table: cells as shown, padded to their column's width, two spaces apart."""
    cells = (pad(printable(cell), width) for cell, width in zip(row, widths, strict=True))
    return _SEPARATOR.join(cells).rstrip()


def render_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """`header` and `rows` in aligned columns, one line each."""
    table = [header, *rows]
    widths = column_widths(table)
    return "\n".join(render_row(row, widths) for row in table)
