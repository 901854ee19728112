"""Records carried in a block: readings and gap records (alarm events come with issue #3)."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from datetime import UTC, datetime


class Quality(enum.StrEnum):
    """The wire's quality vocabulary."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


class RecordFormatError(ValueError):
    """A record does not follow the wire contract."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One normalized reading of one point."""

    point: str
    quota: str
    t: str
    value: float | None
    unit: str
    quality: Quality
    flags: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, object]:
        """The record as a JSON-ready dict."""
        return {
            "type": "reading",
            "point": self.point,
            "quota": self.quota,
            "t": self.t,
            "value": self.value,
            "unit": self.unit,
            "quality": self.quality.value,
            "flags": list(self.flags),
        }


@dataclass(frozen=True, slots=True)
class GapRecord:
    """An explicit, audited statement that readings were lost, and why."""

    t: str
    reason: str
    lost: int
    point: str | None = None

    def to_wire(self) -> dict[str, object]:
        """The record as a JSON-ready dict."""
        return {
            "type": "gap",
            "t": self.t,
            "reason": self.reason,
            "lost": self.lost,
            "point": self.point,
        }


Record = Reading | GapRecord


def iso_time(unix_seconds: float) -> str:
    """ISO 8601 with offset and milliseconds, as the wire and the API carry time."""
    return datetime.fromtimestamp(unix_seconds, UTC).isoformat(timespec="milliseconds")


def parse_iso_time(text: str) -> float:
    """Unix seconds from an ISO 8601 time that carries an offset."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RecordFormatError(f"time {text!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise RecordFormatError(f"time {text!r} has no offset")
    return moment.timestamp()


def _text(raw: dict[str, object], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise RecordFormatError(f"record field {key!r} must be a non-empty string")
    return value


def record_from_wire(raw: object) -> Record:
    """Parse one record dict; raise RecordFormatError on any deviation."""
    if not isinstance(raw, dict):
        raise RecordFormatError("record must be an object")
    kind = raw.get("type")
    if kind == "reading":
        value = raw.get("value")
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise RecordFormatError("reading value must be a finite number or null")
        flags = raw.get("flags", [])
        if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
            raise RecordFormatError("reading flags must be a list of strings")
        quality = _text(raw, "quality")
        try:
            parsed_quality = Quality(quality)
        except ValueError:
            raise RecordFormatError(f"quality {quality!r} is not good|uncertain|bad") from None
        t = _text(raw, "t")
        parse_iso_time(t)
        return Reading(
            point=_text(raw, "point"),
            quota=_text(raw, "quota"),
            t=t,
            value=None if value is None else float(value),
            unit=_text(raw, "unit"),
            quality=parsed_quality,
            flags=tuple(flags),
        )
    if kind == "gap":
        lost = raw.get("lost")
        if not isinstance(lost, int) or isinstance(lost, bool) or not 0 <= lost < 2**63:
            raise RecordFormatError("gap 'lost' must be a count in 0..2**63-1")
        point = raw.get("point")
        if point is not None and not isinstance(point, str):
            raise RecordFormatError("gap 'point' must be a string or null")
        t = _text(raw, "t")
        parse_iso_time(t)
        return GapRecord(t=t, reason=_text(raw, "reason"), lost=lost, point=point)
    raise RecordFormatError(f"record type {kind!r} is unknown")
