"""Records from the wire: each record object of a block checked field by field.

`record_from_wire` takes what JSON gave and returns the frozen record, or raises
RecordFormatError naming the field that deviates (a missing or mistyped field, a time
outside 1970..2999, a count too large to store, a malformed kid).
"""

from __future__ import annotations

import re
from typing import Final, TypeVar

from specs.records import (
    AlarmEvent,
    AlarmRecord,
    GapReason,
    GapRecord,
    KeyRecord,
    Quality,
    Reading,
    Record,
    RecordFormatError,
    parse_iso_time,
)
from specs.wirejson import is_count, is_number

_QUALITIES: Final = {quality.value: quality for quality in Quality}
_Choice = TypeVar("_Choice", AlarmEvent, GapReason)


def _text(raw: dict[str, object], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise RecordFormatError(f"record field {key!r} must be a non-empty string")
    return value


def _number(raw: dict[str, object], key: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if not is_number(value):
        raise RecordFormatError(f"record field {key!r} must be a finite number or null")
    return float(value)


def _optional_text(raw: dict[str, object], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise RecordFormatError(f"record field {key!r} must be a string or null")
    return value


def _time(raw: dict[str, object], key: str) -> str:
    value = _text(raw, key)
    parse_iso_time(value)
    return value


def _choice(raw: dict[str, object], key: str, kind: type[_Choice], what: str) -> _Choice:
    value = _text(raw, key)
    try:
        return kind(value)
    except ValueError:
        choices = "|".join(member.value for member in kind)
        raise RecordFormatError(f"{what} {value!r} is not {choices}") from None


def _alarm_from_wire(raw: dict[str, object]) -> AlarmRecord:
    event = _choice(raw, "event", AlarmEvent, "alarm event")
    t, trigger_t = _time(raw, "t"), _time(raw, "trigger_t")
    return AlarmRecord(
        alarm_id=_text(raw, "alarm_id"),
        point=_text(raw, "point"),
        quota=_text(raw, "quota"),
        t=t,
        event=event,
        level=_text(raw, "level"),
        value=_number(raw, "value"),
        threshold=_number(raw, "threshold"),
        unit=_text(raw, "unit"),
        trigger_t=trigger_t,
        related=_optional_text(raw, "related"),
        detail=_optional_text(raw, "detail"),
    )


_MAX_COUNT = 2**63  # what SQLite INTEGER and PostgreSQL bigint hold


def _optional_count(raw: dict[str, object], key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if not is_count(value) or value >= _MAX_COUNT:
        raise RecordFormatError(f"gap {key!r} must be a count in 0..2**63-1 or null")
    return value


def _optional_time(raw: dict[str, object], key: str) -> str | None:
    value = _optional_text(raw, key)
    if value is not None:
        parse_iso_time(value)
    return value


def _gap_from_wire(raw: dict[str, object]) -> GapRecord:
    reason = _choice(raw, "reason", GapReason, "gap reason")
    t = _time(raw, "t")
    epoch = _optional_text(raw, "epoch")
    from_seq, to_seq = _optional_count(raw, "from_seq"), _optional_count(raw, "to_seq")
    if epoch is None and (from_seq is not None or to_seq is not None):
        raise RecordFormatError("gap 'from_seq'/'to_seq' need an 'epoch'")
    if epoch is not None and from_seq is None:
        raise RecordFormatError("gap with an 'epoch' needs 'from_seq'")
    if from_seq is not None and to_seq is not None and from_seq > to_seq:
        raise RecordFormatError("gap seq range is reversed")
    return GapRecord(
        t=t,
        reason=reason,
        lost=_optional_count(raw, "lost"),
        t_from=_optional_time(raw, "from"),
        t_to=_optional_time(raw, "to"),
        epoch=epoch,
        from_seq=from_seq,
        to_seq=to_seq,
        point=_optional_text(raw, "point"),
    )


_KID = re.compile(r"[0-9a-f]{16}")
_MAX_PUBLIC_KEY = 4096  # a PEM public key of any allowed algorithm is a few hundred bytes


def _kid(raw: dict[str, object], key: str) -> str:
    value = _text(raw, key)
    if not _KID.fullmatch(value):
        raise RecordFormatError(f"key record {key!r} must be 16 lowercase hex digits")
    return value


def _key_from_wire(raw: dict[str, object]) -> KeyRecord:
    t = _time(raw, "t")
    public_key = _text(raw, "public_key")
    if len(public_key) > _MAX_PUBLIC_KEY:
        raise RecordFormatError(f"key record 'public_key' exceeds {_MAX_PUBLIC_KEY} characters")
    return KeyRecord(
        t=t,
        kid=_kid(raw, "kid"),
        alg=_text(raw, "alg"),
        public_key=public_key,
        replaces=_kid(raw, "replaces"),
    )


def record_from_wire(raw: object) -> Record:
    """Parse one record dict; raise RecordFormatError on any deviation."""
    if not isinstance(raw, dict):
        raise RecordFormatError("record must be an object")
    kind = raw.get("type")
    if kind == "reading":
        value = raw.get("value")
        if value is not None and not is_number(value):
            raise RecordFormatError("reading value must be a finite number or null")
        flags = raw.get("flags", [])
        if not isinstance(flags, list) or (flags and not all(isinstance(f, str) for f in flags)):
            raise RecordFormatError("reading flags must be a list of strings")
        quality = raw.get("quality")
        parsed_quality = _QUALITIES.get(quality) if isinstance(quality, str) else None
        if parsed_quality is None:
            quality = _text(raw, "quality")  # names a missing or non-string field
            raise RecordFormatError(f"quality {quality!r} is not good|uncertain|bad")
        point, quota, t, unit = raw.get("point"), raw.get("quota"), raw.get("t"), raw.get("unit")
        # One test for the common case; _text names the offending field otherwise.
        if not (
            isinstance(point, str)
            and isinstance(quota, str)
            and isinstance(t, str)
            and isinstance(unit, str)
            and point
            and quota
            and t
            and unit
        ):
            point, quota, t, unit = (_text(raw, key) for key in ("point", "quota", "t", "unit"))
        parse_iso_time(t)
        return Reading(
            point=point,
            quota=quota,
            t=t,
            value=None if value is None else float(value),
            unit=unit,
            quality=parsed_quality,
            flags=tuple(flags),
        )
    if kind == "alarm":
        return _alarm_from_wire(raw)
    if kind == "gap":
        return _gap_from_wire(raw)
    if kind == "key":
        return _key_from_wire(raw)
    raise RecordFormatError(f"record type {kind!r} is unknown")
