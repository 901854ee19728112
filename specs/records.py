"""Records carried in a block: readings, alarm events, gap records, key announcements."""

from __future__ import annotations

import enum
import functools
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
LATEST_TIME = datetime(2999, 12, 31, tzinfo=UTC).timestamp()
"""The last unix time gz/1 carries (2999-12-31): every time is rendered again by `iso_time`."""


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
    # Blocks the collector ACKed (the agent released them, and retention deleted them) that
    # it lacks again: its database was put back to a backup taken before it stored them.
    RELEASED = "released"
    # A block larger than the broker takes (the Maximum Packet Size of its CONNACK): its seq
    # never comes. Its records were sealed again in smaller blocks (`lost` 0; a block of one
    # record is never split nor dropped: it waits for a broker that takes it).
    TOO_LARGE = "too_large"


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


def optional_iso_time(unix_seconds: float | None) -> str | None:
    """`iso_time` of a time that may be unknown: None stays None (JSON null)."""
    return None if unix_seconds is None else iso_time(unix_seconds)


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
    if not _EARLIEST <= seconds <= LATEST_TIME:
        raise RecordFormatError(f"time {text!r} is outside 1970..2999")
    return seconds
