"""Records carried in a block: readings, alarm events, gap records, key announcements."""

from __future__ import annotations

import enum
import functools
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from specs.wirejson import canonical_json, json_number, json_string


class Quality(enum.StrEnum):
    """The wire's quality vocabulary."""

    GOOD = "good"
    UNCERTAIN = "uncertain"
    BAD = "bad"


_EARLIEST = 0.0
_LATEST = datetime(2999, 12, 31, tzinfo=UTC).timestamp()


class RecordFormatError(ValueError):
    """A record does not follow the wire contract."""


@dataclass(frozen=True, slots=True, init=False)
class Reading:
    """One normalized reading of one point."""

    point: str
    quota: str
    t: str
    value: float | None
    unit: str
    quality: Quality
    flags: tuple[str, ...] = ()

    def __init__(  # noqa: PLR0917 - the fields, as dataclass's own __init__ takes them
        self,
        point: str,
        quota: str,
        t: str,
        value: float | None,
        unit: str,
        quality: Quality,
        flags: tuple[str, ...] = (),
    ) -> None:
        # dataclass's __init__ of a frozen class looks object.__setattr__ up again for every
        # field; an agent builds a reading per point per poll (and a collector one per
        # reading stored), so this one calls the slots' own setters, taken once: half the
        # cost, the same object (frozen, compared, hashed and replaced as before).
        _set_point(self, point)
        _set_quota(self, quota)
        _set_t(self, t)
        _set_value(self, value)
        _set_unit(self, unit)
        _set_quality(self, quality)
        _set_flags(self, flags)

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


_set_point, _set_quota, _set_t, _set_value, _set_unit, _set_quality, _set_flags = (
    Reading.__dict__[name].__set__
    for name in ("point", "quota", "t", "value", "unit", "quality", "flags")
)


class GapReason(enum.StrEnum):
    """Why readings were lost: the gap record's vocabulary (DESIGN section 6)."""

    OUTBOX_FULL = "outbox_full"
    DISK_FULL = "disk_full"
    OUTBOX_CORRUPT = "outbox_corrupt"
    OUTBOX_RESTORED = "outbox_restored"
    THINNED = "thinned"


@dataclass(frozen=True, slots=True)
class GapRecord:
    """An explicit, audited statement that readings were lost, and why.

    `lost` counts the readings lost (None when the agent cannot know, e.g. a file restored
    from a snapshot). `t_from`/`t_to` (wire `from`/`to`) span their times. `epoch` with
    `from_seq`..`to_seq` names the blocks that will never come: the collector closes those
    seqs as declared gaps instead of asking for them again. `to_seq` None with a `from_seq`
    means every seq from `from_seq` on in that epoch (the epoch was abandoned); `epoch`
    None means no block range is declared (the readings never reached a block).
    """

    t: str
    reason: GapReason
    lost: int | None
    t_from: str | None = None
    t_to: str | None = None
    epoch: str | None = None
    from_seq: int | None = None
    to_seq: int | None = None
    point: str | None = None

    def to_wire(self) -> dict[str, object]:
        """The record as a JSON-ready dict."""
        return {
            "type": "gap",
            "t": self.t,
            "reason": self.reason.value,
            "lost": self.lost,
            "from": self.t_from,
            "to": self.t_to,
            "epoch": self.epoch,
            "from_seq": self.from_seq,
            "to_seq": self.to_seq,
            "point": self.point,
        }


class AlarmEvent(enum.StrEnum):
    """Whether an alarm starts or ends."""

    RAISE = "raise"
    CLEAR = "clear"


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """An alarm raised or cleared at the edge, naming the reading that triggered it.

    The triggering reading is (`point`, `trigger_t`): readings are unique per point and time.
    `alarm_id` pairs a clear with its raise. `level` is from the indicator's alarm vocabulary
    (H, HH, L, LL; L1, L2; alarm, power_off; blue..red; over_staff, over_quantity,
    overtime; rate). `related` names a second point a derived alarm compared against.
    """

    alarm_id: str
    point: str
    quota: str
    t: str
    event: AlarmEvent
    level: str
    value: float | None
    threshold: float | None
    unit: str
    trigger_t: str
    related: str | None = None
    detail: str | None = None

    def to_wire(self) -> dict[str, object]:
        """The record as a JSON-ready dict."""
        return {
            "type": "alarm",
            "alarm_id": self.alarm_id,
            "point": self.point,
            "quota": self.quota,
            "t": self.t,
            "event": self.event.value,
            "level": self.level,
            "value": self.value,
            "threshold": self.threshold,
            "unit": self.unit,
            "trigger_t": self.trigger_t,
            "related": self.related,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """The gateway announces its next signing key, in a block signed by the key it replaces.

    `public_key` is the new key's public PEM (SubjectPublicKeyInfo, any allowed algorithm),
    `kid` and `alg` name it, `replaces` is the kid of the key that signs this block. Once the
    collector has stored the block, it accepts both keys for its overlap window and then
    retires `replaces`.
    """

    t: str
    kid: str
    alg: str
    public_key: str
    replaces: str

    def to_wire(self) -> dict[str, object]:
        """The record as a JSON-ready dict."""
        return {
            "type": "key",
            "t": self.t,
            "kid": self.kid,
            "alg": self.alg,
            "public_key": self.public_key,
            "replaces": self.replaces,
        }


Record = Reading | AlarmRecord | GapRecord | KeyRecord


_QUALITIES: Final = {quality.value: quality for quality in Quality}
# A reading's keys in sorted order: flags, point, quality, quota, t, type, unit, value.
_QUALITY_JSON: Final = {quality: json_string(quality.value) for quality in Quality}


def record_json(record: Record) -> str:
    """A record's canonical JSON text: exactly `canonical_json(record.to_wire())`.

    Readings, nearly every record sealed, are written field by field with the encoder
    json.dumps uses for strings (no dict, no sort, no enum lookup: ~3x faster); a property
    test holds the two equal for arbitrary readings.
    """
    if record.__class__ is not Reading:
        return canonical_json(record.to_wire())
    r: Reading = record
    flags = "[" + ",".join(map(json_string, r.flags)) + "]" if r.flags else "[]"
    return (
        f'{{"flags":{flags},"point":{json_string(r.point)},'
        f'"quality":{_QUALITY_JSON.get(r.quality) or json_string(str(r.quality))},'
        f'"quota":{json_string(r.quota)},"t":{json_string(r.t)},"type":"reading",'
        f'"unit":{json_string(r.unit)},"value":{json_number(r.value)}}}'
    )


def iso_time(unix_seconds: float) -> str:
    """ISO 8601 with offset and milliseconds, as the wire and the API carry time."""
    return datetime.fromtimestamp(unix_seconds, UTC).isoformat(timespec="milliseconds")


# Every reading of one poll cycle carries the same time text, and a collector parses each
# time twice (checking the record, then normalizing it): a small cache halves the work.
# Failures raise and are never cached.
@functools.lru_cache(maxsize=4096)
def parse_iso_time(text: str) -> float:
    """Unix seconds from an ISO 8601 time that carries an offset."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RecordFormatError(f"time {text!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise RecordFormatError(f"time {text!r} has no offset")
    seconds = moment.timestamp()
    # Bounded so every stored time can be rendered again (iso_time) by the API.
    if not _EARLIEST <= seconds <= _LATEST:
        raise RecordFormatError(f"time {text!r} is outside 1970..2999")
    return seconds


def _text(raw: dict[str, object], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise RecordFormatError(f"record field {key!r} must be a non-empty string")
    return value


def _number(raw: dict[str, object], key: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RecordFormatError(f"record field {key!r} must be a finite number or null")
    return float(value)


def _optional_text(raw: dict[str, object], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise RecordFormatError(f"record field {key!r} must be a string or null")
    return value


def _alarm_from_wire(raw: dict[str, object]) -> AlarmRecord:
    event = _text(raw, "event")
    try:
        parsed_event = AlarmEvent(event)
    except ValueError:
        raise RecordFormatError(f"alarm event {event!r} is not raise|clear") from None
    t, trigger_t = _text(raw, "t"), _text(raw, "trigger_t")
    parse_iso_time(t)
    parse_iso_time(trigger_t)
    return AlarmRecord(
        alarm_id=_text(raw, "alarm_id"),
        point=_text(raw, "point"),
        quota=_text(raw, "quota"),
        t=t,
        event=parsed_event,
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
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < _MAX_COUNT:
        raise RecordFormatError(f"gap {key!r} must be a count in 0..2**63-1 or null")
    return value


def _optional_time(raw: dict[str, object], key: str) -> str | None:
    value = _optional_text(raw, key)
    if value is not None:
        parse_iso_time(value)
    return value


def _gap_from_wire(raw: dict[str, object]) -> GapRecord:
    reason = _text(raw, "reason")
    try:
        parsed_reason = GapReason(reason)
    except ValueError:
        choices = "|".join(r.value for r in GapReason)
        raise RecordFormatError(f"gap reason {reason!r} is not {choices}") from None
    t = _text(raw, "t")
    parse_iso_time(t)
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
        reason=parsed_reason,
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
    t = _text(raw, "t")
    parse_iso_time(t)
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
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
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
