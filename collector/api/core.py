"""Pure pieces of the HTTP API: tokens, cursors, `online`, and how values are read and shown.

Numbers, times, bucket widths (`every`) and media types (`Accept`) are parsed and rendered
here, so that the routes and `collector export` show them alike.

Error tree::

    ValueError
    ├── CursorError     a cursor was not made by this API for this list
    ├── OffsetError     a `tz` is not a UTC offset ±HH:MM within ±14:00
    └── EveryError      an `every` is not a bucket width <n>s|m|h|d within 1 s .. 31 d
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from collector.readmodel import GatewayView, Scope
from specs.wirejson import WireJsonError, load_wire_json

MAX_CURSOR_TIME: Final = 1e12
"""Beyond any time the API stores (1970..2999) and any bucket index derived from one."""


class CursorError(ValueError):
    """A cursor was not made by this API for this list."""


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A bearer token and the districts it may see (`*` = all)."""

    name: str
    token: str
    districts: tuple[str, ...]

    @property
    def scope(self) -> Scope:
        """What this token may see."""
        return Scope.of(self.districts)


def find_token(tokens: Sequence[ApiToken], presented: str) -> ApiToken | None:
    """The token matching `presented`, compared in constant time against every candidate."""
    found: ApiToken | None = None
    wanted = presented.encode("utf-8")
    for candidate in tokens:
        if hmac.compare_digest(candidate.token.encode("utf-8"), wanted) and found is None:
            found = candidate
    return found


def encode_cursor(kind: str, position: Sequence[str | int | float]) -> str:
    """An opaque cursor naming the list it pages and the last item's sort key."""
    # Not ASCII-escaped: the strict loader refuses surrogate escapes (astral characters).
    text = json.dumps([kind, list(position)], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(kind: str, cursor: str, shape: Sequence[type]) -> tuple[str | int | float, ...]:
    """The sort key inside `cursor`; CursorError unless it is a cursor of list `kind`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        # Strict like the wire: no integer past 64 bits, no Infinity, no lone surrogate (a
        # forged cursor must be a 400, not a database error).
        body = load_wire_json(raw)
    except (binascii.Error, WireJsonError, ValueError):
        raise CursorError("cursor is not valid") from None
    if not (isinstance(body, list) and len(body) == 2 and body[0] == kind):  # noqa: PLR2004 - [kind, key]
        raise CursorError(f"cursor does not belong to the {kind} list")
    position = body[1]
    if not isinstance(position, list) or len(position) != len(shape):
        raise CursorError("cursor is not valid")
    for value, expected in zip(position, shape, strict=True):
        valid = isinstance(value, expected) and not isinstance(value, bool)
        if expected is float:
            # Every float a cursor holds is a time (unix seconds).
            valid = (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and abs(value) <= MAX_CURSOR_TIME
            )
        if not valid:
            raise CursorError("cursor is not valid")
    return tuple(float(v) if t is float else v for v, t in zip(position, shape, strict=True))


def is_online(view: GatewayView, now: float, offline_after: float) -> bool:
    """Online when the newest sign of life is recent and is not a status saying offline."""
    status_seen = view.status_seen if view.status_seen is not None else float("-inf")
    block_seen = view.block_seen if view.block_seen is not None else float("-inf")
    newest = max(status_seen, block_seen)
    if newest == float("-inf") or now - newest > offline_after:
        return False
    if status_seen >= block_seen:
        return bool(view.status_online)
    return True


def last_seen(view: GatewayView) -> float | None:
    """The newest of the last status and the last block."""
    return max((t for t in (view.status_seen, view.block_seen) if t is not None), default=None)


# --- numbers ------------------------------------------------------------------------------

_FLOAT32: Final = struct.Struct("<f")
_FLOAT32_DIGITS: Final = 9  # nine significant digits always round-trip a float32


def _float32_of(value: float) -> float | None:
    """`value` rounded to the nearest float32, or None beyond the float32 range."""
    try:
        return float(_FLOAT32.unpack(_FLOAT32.pack(value))[0])
    except OverflowError:
        return None


def shortest_float32(value: float) -> float:
    """A float32 `value` with the fewest digits that read back as it: 2.4833622, not ...1978759766.

    Instruments give float32; the edge widens them to float64, whose repr then shows digits
    the instrument never had. Only a value that is exactly a float32 is shortened (to 1..9
    significant digits); any other float is returned unchanged, and so is a value whose
    shortest float32 form would print longer than its own repr.
    """
    if not math.isfinite(value) or _float32_of(value) != value:
        return value
    for digits in range(1, _FLOAT32_DIGITS + 1):
        candidate = float(f"{value:.{digits}g}")
        if _float32_of(candidate) == value:
            return candidate if len(repr(candidate)) <= len(repr(value)) else value
    return value  # unreachable: nine digits always round-trip a float32


def shown_value(value: float | None) -> float | None:
    """A stored value as the API shows it: None when unknown or not finite.

    Only an aggregate is ever not finite: an average whose sum went past the largest double.
    """
    return None if value is None or not math.isfinite(value) else shortest_float32(value)


# --- times --------------------------------------------------------------------------------


class OffsetError(ValueError):
    """A `tz` is not a UTC offset ±HH:MM within ±14:00."""


MAX_OFFSET: Final = timedelta(hours=14)  # UTC+14 (Kiribati) and UTC-12 are the extremes
_OFFSET: Final = re.compile(r"([+-])([0-9]{2}):([0-9]{2})")


def parse_utc_offset(text: str) -> timezone:
    """A fixed UTC offset from `±HH:MM` (`+08:00`); OffsetError otherwise.

    A leading space counts as `+`: `?tz=+08:00` typed into a URL arrives as ` 08:00`, because
    a query string decodes `+` as a space.
    """
    candidate = "+" + text[1:] if text.startswith(" ") else text
    match = _OFFSET.fullmatch(candidate)
    if match is None:
        raise OffsetError(f"tz {text!r} must be a UTC offset such as +08:00 or -05:30")
    sign, hours, minutes = match.groups()
    if int(minutes) >= 60:  # noqa: PLR2004 - minutes of an hour
        raise OffsetError(f"tz {text!r}: minutes must be below 60")
    offset = timedelta(hours=int(hours), minutes=int(minutes))
    if offset > MAX_OFFSET:
        raise OffsetError(f"tz {text!r} is beyond ±14:00")
    return timezone(-offset if sign == "-" else offset)


def offset_text(zone: timezone) -> str:
    """`±HH:MM` of a fixed offset (UTC is `+00:00`)."""
    seconds = int(zone.utcoffset(None).total_seconds())
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    return f"{sign}{hours:02d}:{rest // 60:02d}"


def shown_time(unix_seconds: float, zone: timezone = UTC) -> str:
    """ISO 8601 with milliseconds and the offset of `zone`, as the API shows a time."""
    return datetime.fromtimestamp(unix_seconds, zone).isoformat(timespec="milliseconds")


def shown_optional_time(unix_seconds: float | None, zone: timezone = UTC) -> str | None:
    """ISO 8601 for a time that may be unknown."""
    return None if unix_seconds is None else shown_time(unix_seconds, zone)


# --- bucket widths ------------------------------------------------------------------------


class EveryError(ValueError):
    """An `every` is not a bucket width <n>s|m|h|d within 1 s .. 31 d."""


DAY: Final = 86_400
MIN_EVERY: Final = 1
MAX_EVERY: Final = 31 * DAY
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": DAY}
_EVERY: Final = re.compile(r"([0-9]{1,8})([smhd])")


def parse_every(text: str) -> int:
    """A bucket width in seconds from `<n>s|m|h|d` (`1m`, `15m`, `1h`, `1d`).

    EveryError unless it lies within 1 s .. 31 d.
    """
    match = _EVERY.fullmatch(text)
    if match is None:
        raise EveryError(
            f"every {text!r} must be a whole number and a unit s, m, h or d, such as 1m, 15m,"
            " 1h or 1d"
        )
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if not MIN_EVERY <= seconds <= MAX_EVERY:
        raise EveryError(f"every {text!r} must lie between 1s and 31d")
    return seconds


def grid_offset(width: int, zone: timezone) -> int:
    """Where buckets of `width` seconds start, as seconds added to unix time before flooring.

    Whole days start at midnight of the shown offset (a day at +08:00 is a local day); every
    other width starts at multiples of itself since the epoch in UTC, whatever `zone` is.
    """
    if width % DAY:
        return 0
    return int(zone.utcoffset(None).total_seconds())


# --- media types --------------------------------------------------------------------------

CSV_MEDIA_TYPE: Final = "text/csv"
_JSON_TYPE: Final = "application/json"
_WILDCARDS: Final = frozenset({"application/*", "*/*"})


def _quality(parameters: Sequence[str]) -> float:
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0
    return 1.0


def wants_csv(accept: str | None) -> bool:
    """Whether an Accept header asks for text/csv rather than JSON.

    CSV when `text/csv` is named with q > 0, with a q above `application/json`'s and not
    below that of a wildcard (`*/*`, `application/*`); JSON stays the default.
    """
    if not accept:
        return False
    best = {CSV_MEDIA_TYPE: 0.0, _JSON_TYPE: 0.0, "*": 0.0}
    for media_range in accept.split(","):
        media_type, *parameters = media_range.split(";")
        name = media_type.strip().lower()
        key = "*" if name in _WILDCARDS else name
        if key in best:
            best[key] = max(best[key], _quality(parameters))
    csv_q = best[CSV_MEDIA_TYPE]
    return csv_q > 0 and csv_q > best[_JSON_TYPE] and csv_q >= best["*"]
