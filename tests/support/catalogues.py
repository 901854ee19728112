"""Copies of the shipped catalogue for tests that look at one thing at a time."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from specs.catalogue import DATA_FILE, Catalogue, load_catalogue

ROOT = Path(__file__).resolve().parents[2]


@cache
def unbound_catalogue() -> Catalogue:
    """The shipped catalogue with every `binding: limit` made a reference: a site may set any
    number, so a test of how an alarm compares can try numbers a limit would refuse."""
    text = (ROOT / DATA_FILE).read_text(encoding="utf-8")
    assert "binding: limit" in text
    return load_catalogue(text.replace("binding: limit", "binding: reference"))
