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


@cache
def methane_bound_catalogue() -> Catalogue:
    """The shipped catalogue with coal methane's working-face defaults (MK-M0101 alarm 1.0,
    power-off 1.5, restore <1.0) made limits: the only indicator with a restore and with a unit
    to convert, so the tests of those rules bind it in a copy (the shipped ones are references:
    other locations of a mine lawfully set other numbers)."""
    text = (ROOT / DATA_FILE).read_text(encoding="utf-8")
    start = text.index("  - code: MK-M0101\n")
    end = text.index("  - code: MK-M0102\n")
    methane = text[start:end]
    assert methane.count("binding: reference") == len(("alarm", "power_off", "restore"))
    bound = methane.replace("binding: reference", "binding: limit")
    return load_catalogue(text[:start] + bound + text[end:])
