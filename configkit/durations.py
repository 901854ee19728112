"""Durations and sizes as people write them in config files: `500ms`, `5m`, `64MiB`.

Pure parsers; every bad input is a `ValueError` whose message shows the accepted forms.
"""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_FORMS = "a number and a unit, such as 500ms, 1s, 5m, 1h or 7d"

_SIZE = re.compile(r"^\s*(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>B|KiB|MiB|GiB|TiB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_SIZE_FORMS = "a whole number of bytes or a number and a unit, such as 512KiB, 64MiB or 2GiB"
# SI prefixes are a classic off-by-7% trap for disk quotas, so they are refused by name.
_SI_SIZE = re.compile(r"^\s*[0-9.]+\s*(?:[kKMGT]B?|[kKMGT]iB?)\s*$")


def parse_duration(text: str) -> float:
    """Parse a duration such as `500ms`, `1s`, `5m`, `1h` or `7d` into seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"duration {text!r} must be {_DURATION_FORMS}")
    seconds = float(match["number"]) * _DURATION_UNITS[match["unit"]]
    if not math.isfinite(seconds):
        raise ValueError(f"duration {text!r} is too large")
    return seconds


def parse_size(value: str | int) -> int:
    """Parse a size such as `512KiB`, `64MiB`, `2GiB` or a plain number of bytes."""
    # bool is an int subclass; `max_bytes: yes` is a mistake, not one byte.  ValueError, not
    # TypeError: this is a value a person wrote, and config validation reports ValueErrors.
    if value is True or value is False:
        raise ValueError(f"size must be {_SIZE_FORMS}, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size must not be negative, got {value}")
        return value
    match = _SIZE.match(value)
    if match is None:
        if _SI_SIZE.match(value):
            raise ValueError(f"size {value!r}: use KiB, MiB, GiB or TiB (powers of 1024)")
        raise ValueError(f"size {value!r} must be {_SIZE_FORMS}")
    number = float(match["number"])
    if not math.isfinite(number):
        raise ValueError(f"size {value!r} is too large")
    factor = _SIZE_UNITS[match["unit"]]
    if factor == 1 and "." in match["number"]:
        raise ValueError(f"size {value!r}: a number of bytes must be whole")
    return int(number * factor)


def format_duration(seconds: float) -> str:
    """Render seconds the way `parse_duration` reads them: `200ms`, `30s`, `5m`, `7d`."""
    if seconds != 0:
        for unit, factor in sorted(_DURATION_UNITS.items(), key=lambda item: -item[1]):
            count = seconds / factor
            if count >= 1 and math.isclose(count, round(count), abs_tol=1e-9):
                return f"{round(count)}{unit}"
    return f"{seconds:g}s"


def format_size(size: int) -> str:
    """Render bytes the way `parse_size` reads them: `512KiB`, `2GiB`, `1000`."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        factor = _SIZE_UNITS[unit]
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)
