"""Pure core of the CSV import: one CSV row in, one backfilled `Reading` or a reason out.

Nothing here reads files or touches the outbox. The hot path (a million rows per run) avoids
per-row `datetime` objects: times are parsed by one regular expression into integer
microseconds, with the date part's day number and the output date text cached per day.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Final

from edge_agent.core.points import ResolvedPoint
from edge_agent.core.thinning import BACKFILL_FLAG
from specs.catalogue import Catalogue, UnitConversion
from specs.records import Quality, Reading

OUT_OF_RANGE_FLAG: Final = "out_of_range"
REQUIRED_COLUMNS: Final = ("point", "t", "value")
OPTIONAL_COLUMNS: Final = ("quality", "unit")
DEFAULT_TZ: Final = "+08:00"

_US: Final = 1_000_000
_EPOCH_ORDINAL: Final = date(1970, 1, 1).toordinal()
# The bounds of specs.records.parse_iso_time: every stored time can be rendered again.
_LATEST_US: Final = (date(2999, 12, 31).toordinal() - _EPOCH_ORDINAL) * 86_400 * _US
_OUT_OF_RANGE: Final = (
    "before 1970-01-01T00:00:00Z or after 2999-12-31T00:00:00Z (the instants gz/1 carries;"
    " a time without an offset is read at --tz)"
)
_MAX_HOUR: Final = 23
_MAX_MINUTE: Final = 59
_SIGNIFICANT_DIGITS: Final = 12
_IDENTITY: Final = UnitConversion(1.0, 0.0)
_MS_DIGITS: Final = 3
_FINER_THAN_MS: Final = "finer than the millisecond gz/1 carries (round it in the file)"
# ASCII digits only: `\d` would also take other scripts' digits.
_TIME: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2})"
    r"(?::([0-9]{2})(?:[.,]([0-9]{1,9}))?)?"
    r"(?:([Zz])|([+-])([0-9]{2})(?::?([0-9]{2}))?)?"
)
_OFFSET: Final = re.compile(r"([+-])([0-9]{2})(?::?([0-9]{2}))?")
_QUALITIES: Final = {q.value: q for q in Quality}
_QUALITY_CHOICES: Final = "|".join(q.value for q in Quality)


class HeaderError(ValueError):
    """The header row does not name the columns the import needs."""


class OffsetError(ValueError):
    """A `--tz` value is not a UTC offset such as +08:00."""


class TimeFormatError(ValueError):
    """A `t` cell is not an ISO 8601 date and time."""


@dataclass(frozen=True, slots=True)
class Columns:
    """Where each known column sits in a row, and how many cells a row has."""

    point: int
    t: int
    value: int
    quality: int | None
    unit: int | None
    count: int


@dataclass(frozen=True, slots=True)
class Target:
    """What a CSV row's point code resolves to in the site map and the catalogue.

    A row without a unit is in `default_unit`: the unit the site map gives the point (what
    the instrument reports), else the catalogue's canonical unit.
    """

    point: str
    quota: str
    unit: str
    default_unit: str
    conversions: Mapping[str, UnitConversion]
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a row cannot be imported (the text after `FILE:LINE: `)."""

    reason: str


def parse_header(cells: Sequence[str]) -> Columns:
    """Find the columns in a header row (names trimmed, any case).

    Raises:
        HeaderError: a required column is missing, or a name is unknown or repeated.
    """
    names = [cell.strip().lower() for cell in cells]
    known = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
    problems = [f"column {name!r} is unknown" for name in names if name not in known]
    problems += [f"column {name!r} appears twice" for name in known if names.count(name) > 1]
    problems += [f"column {name!r} is missing" for name in REQUIRED_COLUMNS if name not in names]
    if problems:
        expected = ",".join(REQUIRED_COLUMNS) + " [" + ",".join(OPTIONAL_COLUMNS) + "]"
        raise HeaderError(f"header: {'; '.join(problems)} (expected {expected})")
    return Columns(
        point=names.index("point"),
        t=names.index("t"),
        value=names.index("value"),
        quality=names.index("quality") if "quality" in names else None,
        unit=names.index("unit") if "unit" in names else None,
        count=len(names),
    )


def parse_offset(text: str) -> int:
    """Seconds east of UTC from `Z`, `UTC`, `+08:00`, `+0800` or `+08`.

    Raises:
        OffsetError: anything else, or an offset of a day or more.
    """
    stripped = text.strip()
    if stripped.upper() in {"Z", "UTC"}:
        return 0
    match = _OFFSET.fullmatch(stripped)
    if match is None:
        raise OffsetError(f"{text!r} is not a UTC offset such as +08:00")
    sign, hours, minutes = match.groups()
    offset = _offset_seconds(sign, hours, minutes)
    if offset is None:
        raise OffsetError(f"{text!r} is not a UTC offset such as +08:00")
    return offset


def _offset_seconds(sign: str, hours: str, minutes: str | None) -> int | None:
    h, m = int(hours), int(minutes or 0)
    if h > _MAX_HOUR or m > _MAX_MINUTE:
        return None
    seconds = h * 3600 + m * 60
    return -seconds if sign == "-" else seconds


@lru_cache(maxsize=4096)
def _day_number(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01; ValueError for a date that does not exist."""
    return date(year, month, day).toordinal() - _EPOCH_ORDINAL


@lru_cache(maxsize=4096)
def _day_text(days: int) -> str:
    return date.fromordinal(days + _EPOCH_ORDINAL).isoformat()


def parse_time(text: str, default_offset: int) -> int:
    """Microseconds since the Unix epoch from an ISO 8601 date and time.

    `T` or a space separates date and time; seconds and a fraction are optional; a time
    without `Z` or an offset is at `default_offset` seconds east of UTC. gz/1 carries
    milliseconds: a fraction may have more digits only if they are zeros (a finer time is
    refused, not cut: two readings 0.5 ms apart would become one, a reading's time altered).

    Raises:
        TimeFormatError: not that form, a date or time that does not exist, finer than a
            millisecond, or before 1970-01-01T00:00:00Z or after 2999-12-31T00:00:00Z
            (specs.records.LATEST_TIME).
    """
    match = _TIME.fullmatch(text)
    if match is None:
        raise TimeFormatError(f"bad time {text!r}: not ISO 8601 (YYYY-MM-DD hh:mm:ss[+08:00])")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        days = _day_number(int(year), int(month), int(day))
    except ValueError:
        raise TimeFormatError(f"bad time {text!r}: no such date") from None
    h, m, s = int(hour), int(minute), int(second or 0)
    if h > _MAX_HOUR or m > _MAX_MINUTE or s > _MAX_MINUTE:
        raise TimeFormatError(f"bad time {text!r}: no such time of day")
    if zulu:
        offset = 0
    elif sign:
        parsed = _offset_seconds(sign, off_h, off_m)
        if parsed is None:
            raise TimeFormatError(f"bad time {text!r}: no such UTC offset")
        offset = parsed
    else:
        offset = default_offset
    if fraction and fraction[_MS_DIGITS:].strip("0"):
        raise TimeFormatError(f"bad time {text!r}: {_FINER_THAN_MS}")
    micros = int(fraction[:_MS_DIGITS].ljust(_MS_DIGITS, "0")) * 1000 if fraction else 0
    us = (days * 86_400 + h * 3600 + m * 60 + s - offset) * _US + micros
    if not 0 <= us <= _LATEST_US:
        raise TimeFormatError(f"bad time {text!r}: {_OUT_OF_RANGE}")
    return us


def wire_time(us: int) -> str:
    """The wire's time text for `us` microseconds: `specs.records.iso_time` of the same moment.

    UTC with milliseconds (the microseconds truncated, as `isoformat` does; `parse_time`
    gives none).
    """
    ms = us // 1000
    days, ms_of_day = divmod(ms, 86_400_000)
    hours, rest = divmod(ms_of_day, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{_day_text(days)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}+00:00"


@lru_cache(maxsize=4096)
def _wire_time_of(text: str, default_offset: int) -> str:
    """`wire_time(parse_time(...))`, cached: a log repeats each time for each of its points."""
    return wire_time(parse_time(text, default_offset))


def targets_of(points: Iterable[ResolvedPoint], catalogue: Catalogue) -> dict[str, Target]:
    """Each point code of the site map with its quota, units and plausible range.

    Raises:
        LookupError: a point's quota is not in the catalogue (the config loader refuses
            such a map, so this is a bug).
    """
    targets = {}
    for point in points:
        indicator = catalogue.get(point.quota)
        if indicator is None:
            raise LookupError(f"quota {point.quota} of {point.point} is not in the catalogue")
        targets[point.point] = Target(
            point=point.point,
            quota=point.quota,
            unit=indicator.unit,
            default_unit=point.unit,
            conversions=indicator.units,
            low=indicator.low,
            high=indicator.high,
        )
    return targets


@dataclass(frozen=True, slots=True)
class RowParser:
    """Turns the cells of one CSV row into a backfilled reading, or says why it cannot.

    The reading is in the catalogue's canonical unit (converted with the catalogue's
    factors; a unit the indicator does not accept rejects the row), keeps its own time,
    carries the flag `backfill` and, like a live reading, is at least `uncertain` with
    `out_of_range` when its value lies outside the indicator's plausible range. An empty
    value is allowed only with quality `bad` (the reading then has no value).
    """

    columns: Columns
    targets: Mapping[str, Target]
    default_offset: int

    def parse(self, cells: Sequence[str]) -> Reading | Rejection:
        """The reading of one data row (its cells as the CSV reader gave them)."""
        try:
            return self._reading(cells)
        except _RowError as exc:
            return Rejection(str(exc))

    def _reading(self, cells: Sequence[str]) -> Reading:
        columns = self.columns
        if len(cells) != columns.count:
            raise _RowError(f"expected {columns.count} columns, found {len(cells)}")
        code = cells[columns.point].strip()
        target = self.targets.get(code)
        if target is None:
            raise _RowError(f"unknown point {code!r}")
        try:
            t = _wire_time_of(cells[columns.t].strip(), self.default_offset)
        except TimeFormatError as exc:
            raise _RowError(str(exc)) from None
        quality = Quality.GOOD if columns.quality is None else _quality(cells[columns.quality])
        unit = target.default_unit
        if columns.unit is not None:
            unit = cells[columns.unit].strip() or unit
        conversion = target.conversions.get(unit)
        if conversion is None:
            accepted = ", ".join(sorted(target.conversions))
            raise _RowError(
                f"unit {unit!r} is not convertible to {target.unit} for {target.point}"
                f" ({target.quota} accepts {accepted})"
            )
        value: float | None = None
        flags: tuple[str, ...] = (BACKFILL_FLAG,)
        raw = cells[columns.value]
        if quality is not Quality.BAD or raw.strip():
            value = _value(raw, conversion, target.unit)
            if not target.low <= value <= target.high:
                flags = (BACKFILL_FLAG, OUT_OF_RANGE_FLAG)
                if quality is Quality.GOOD:
                    quality = Quality.UNCERTAIN
        return Reading(
            point=target.point,
            quota=target.quota,
            t=t,
            value=value,
            unit=target.unit,
            quality=quality,
            flags=flags,
        )


class _RowError(ValueError):
    """A row cannot be imported; the message is the reason."""


def _quality(cell: str) -> Quality:
    text = cell.strip().lower()
    if not text:
        return Quality.GOOD
    quality = _QUALITIES.get(text)
    if quality is None:
        raise _RowError(f"quality {cell!r} is not {_QUALITY_CHOICES}")
    return quality


def _value(cell: str, conversion: UnitConversion, unit: str) -> float:
    text = cell.strip()
    if not text.isascii():  # float() reads digits of any script (fullwidth, Arabic-Indic)
        raise _RowError(f"value {cell!r} is not a number in ASCII digits")
    number = _number(text)
    if number is None:
        raise _RowError(f"value {cell!r} is not a number")
    if conversion == _IDENTITY:
        return number
    value = _converted(number, conversion)
    if not math.isfinite(value):
        raise _RowError(f"value {cell!r} is too large in {unit}")
    return value


def _number(text: str) -> float | None:
    """A finite number written plainly (no `_` digit groups), else None."""
    if "_" in text:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _converted(value: float, conversion: UnitConversion) -> float:
    """`value` in the canonical unit without binary noise (8700 mm is 8.7 m, not 8.7000001).

    Twelve significant digits, as the collector keeps: far more than any instrument resolves.
    """
    canonical = conversion.to_canonical(value)
    return float(f"{canonical:.{_SIGNIFICANT_DIGITS}g}") if math.isfinite(canonical) else canonical
