"""Readings and buckets as CSV rows: RFC 4180 (CRLF, minimal quoting), UTF-8, header first.

`GET /v1/readings` with `Accept: text/csv` and `collector export --format csv` both write
these, so a file exported on the collector host equals what the API streams. Cells are the
JSON fields, shown the same way: times at the chosen offset, float32 values with their
shortest digits, an unknown value as an empty cell, flags joined by `;`.

A text cell a spreadsheet would run as a formula (CWE-1236) is prefixed with `'`, which
spreadsheets show as text: flags are whatever text a gateway signed, and these files are
opened by regulators. Numbers are never text cells, so a negative value stays a number.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import timezone
from typing import Final

from collector.api.core import shown_time, shown_value
from collector.readmodel import BucketRow, ReadingRow

READING_COLUMNS: Final = ("gateway", "point", "quota", "t", "value", "unit", "quality", "flags")
BUCKET_COLUMNS: Final = (
    "gateway",
    "point",
    "quota",
    "unit",
    "t",
    "min",
    "max",
    "avg",
    "last",
    "count",
)
FLAG_SEPARATOR: Final = ";"
_FORMULA_START: Final = ("=", "@", "\t", "\r")
_SIGNS: Final = ("+", "-")


def text_cell(text: str) -> str:
    """`text` as a cell no spreadsheet runs: a leading = @ TAB CR, or a sign before more, gets '.

    A lone sign (the unit "-") is no formula and stays as it is.
    """
    if text.startswith(_FORMULA_START) or (text.startswith(_SIGNS) and len(text) > 1):
        return "'" + text
    return text


def number_cell(value: float | None) -> str:
    """A value as its cell: shortest float32 digits when it is one, empty as JSON's null."""
    shown = shown_value(value)
    return "" if shown is None else repr(shown)


def reading_cells(row: ReadingRow, zone: timezone) -> list[str]:
    """One reading in READING_COLUMNS order."""
    return [
        text_cell(row.gateway),
        text_cell(row.point),
        text_cell(row.quota),
        shown_time(row.t, zone),
        number_cell(row.value),
        text_cell(row.unit),
        text_cell(row.quality),
        text_cell(FLAG_SEPARATOR.join(row.flags)),
    ]


def bucket_cells(row: BucketRow, zone: timezone) -> list[str]:
    """One bucket in BUCKET_COLUMNS order."""
    return [
        text_cell(row.gateway),
        text_cell(row.point),
        text_cell(row.quota),
        text_cell(row.unit),
        shown_time(row.t, zone),
        number_cell(row.min),
        number_cell(row.max),
        number_cell(row.avg),
        number_cell(row.last),
        str(row.count),
    ]


def csv_text(rows: Iterable[Sequence[str]]) -> str:
    """Rows as RFC 4180 text: CRLF line ends, fields quoted only when they must be."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerows(rows)
    return buffer.getvalue()
