"""Pure normalization of what a verified block or meta message carries, against the catalogue.

The stored block bytes never change (auditors re-verify them); normalization decides only what
the readings, alarms and points tables hold:

- **Readings:** the value is converted to the indicator's canonical unit. A quota the catalogue
  does not list (`unknown_quota`), or a unit its indicator does not accept (`unknown_unit`),
  leaves that one record out with an audit row naming gateway, epoch, seq, record index and
  point; the rest of the block is stored and the block is acknowledged, because resending the
  same signed bytes could never change the verdict. A value outside the indicator's plausible
  range keeps its value, gains the `out_of_range` flag and at least `uncertain` quality.
- **Alarm events:** an unknown quota leaves the event out (`unknown_quota`) like a reading. Value
  and threshold are converted when the unit is one the indicator accepts (a rate unit such as
  mm/d to the indicator's canonical rate unit) and kept as sent otherwise: an alarm is the edge's
  statement of what it evaluated, and is never dropped for its unit.
- **Gap records** pass unchanged (times as unix seconds); the seq range one declares is
  closed by the storage (`collector.storage.core.advance`).
- **Meta points:** unit and thresholds are converted like readings where the catalogue knows the
  quota and unit, and kept as sent otherwise (a description never rejects a point).
"""

from __future__ import annotations

import math
from typing import Final

from collector.model import (
    MAX_DETAIL,
    AlarmEntry,
    AuditEntry,
    BlockEntries,
    GapEntry,
    MetaPoint,
    ReadingEntry,
    Reason,
)
from specs.block import Block
from specs.catalogue import Catalogue, Indicator, UnitConversion
from specs.meta import PointMeta
from specs.records import AlarmRecord, GapRecord, KeyRecord, Quality, Reading, parse_iso_time

OUT_OF_RANGE: Final = "out_of_range"
SIGNIFICANT_DIGITS: Final = 12
IDENTITY: Final = UnitConversion(1.0, 0.0)
_SEVERITY: Final = {Quality.GOOD: 0, Quality.UNCERTAIN: 1, Quality.BAD: 2}
_QUALITY_TEXT: Final = {quality: quality.value for quality in Quality}


class RecordRejectedError(ValueError):
    """One record cannot enter the normalized tables; `reason` is its audit reason."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _worst(one: Quality, other: Quality) -> Quality:
    return one if _SEVERITY[one] >= _SEVERITY[other] else other


def _indicator(catalogue: Catalogue, quota: str) -> Indicator:
    indicator = catalogue.get(quota)
    if indicator is None:
        raise RecordRejectedError(Reason.UNKNOWN_QUOTA, f"quota {quota!r} is not in the catalogue")
    return indicator


def _convert(indicator: Indicator, value: float | None, unit: str) -> float | None:
    if value is None or indicator.units[unit] == IDENTITY:
        return value
    return _tidy(indicator.to_canonical(value, unit))


def _convert_rate(indicator: Indicator, value: float | None, unit: str) -> float | None:
    if value is None or indicator.rate_units[unit] == IDENTITY:
        return value
    return _tidy(indicator.rate_to_canonical(value, unit))


def _tidy(value: float) -> float:
    """Drop binary noise a conversion adds (8700 mm -> 8.7 m, not 8.700000000000001).

    12 significant digits keep far more than any instrument resolves.
    """
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(value) else value


def normalize_reading(idx: int, reading: Reading, catalogue: Catalogue) -> ReadingEntry:
    """Record `idx` of a block, in its canonical unit and range-checked.

    Raises RecordRejectedError for an unknown quota or unit.
    """
    # Written for the hot path (every reading of every block): one lookup each for the
    # indicator and the conversion, no helper calls on the common identity conversion.
    indicator = catalogue.indicators.get(reading.quota) or _indicator(catalogue, reading.quota)
    conversion = indicator.units.get(reading.unit)
    if conversion is None:
        accepted = ", ".join(sorted(indicator.units))
        raise RecordRejectedError(
            Reason.UNKNOWN_UNIT,
            f"unit {reading.unit!r} is not accepted for {reading.quota} (accepted: {accepted})",
        )
    value = reading.value
    if value is not None and (conversion.factor != 1.0 or conversion.offset != 0.0):
        value = _tidy(conversion.to_canonical(value))
    quality, flags = reading.quality, reading.flags
    if value is not None and not math.isfinite(value):
        # Only a finite value this large in another unit overflows; it carries no number.
        value, quality = None, Quality.BAD
    if (value is None and reading.value is not None) or (
        value is not None and not indicator.low <= value <= indicator.high
    ):
        quality = _worst(quality, Quality.UNCERTAIN)
        if OUT_OF_RANGE not in flags:
            flags = (*flags, OUT_OF_RANGE)
    return ReadingEntry(
        idx, reading.point, reading.quota, parse_iso_time(reading.t), value, indicator.unit,
        _QUALITY_TEXT[quality], flags,
    )  # fmt: skip


def _finite_or_none(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def normalize_alarm(idx: int, record: AlarmRecord, catalogue: Catalogue) -> AlarmEntry:
    """Alarm event `idx` of a block, value and threshold in the canonical unit where defined.

    Raises RecordRejectedError for an unknown quota.
    """
    indicator = _indicator(catalogue, record.quota)
    value, threshold, unit = record.value, record.threshold, record.unit
    if unit in indicator.units:
        value = _finite_or_none(_convert(indicator, value, unit))
        threshold = _finite_or_none(_convert(indicator, threshold, unit))
        unit = indicator.unit
    elif unit in indicator.rate_units and indicator.rate_unit is not None:
        value = _finite_or_none(_convert_rate(indicator, value, unit))
        threshold = _finite_or_none(_convert_rate(indicator, threshold, unit))
        unit = indicator.rate_unit
    return AlarmEntry(
        idx=idx,
        alarm_id=record.alarm_id,
        point=record.point,
        quota=record.quota,
        event=record.event,
        t=parse_iso_time(record.t),
        level=record.level,
        value=value,
        threshold=threshold,
        unit=unit,
        trigger_t=parse_iso_time(record.trigger_t),
        related=record.related,
        detail=record.detail,
    )


def _optional_time(text: str | None) -> float | None:
    return None if text is None else parse_iso_time(text)


def _gap(idx: int, record: GapRecord) -> GapEntry:
    return GapEntry(
        idx=idx,
        t=parse_iso_time(record.t),
        reason=record.reason,
        lost=record.lost,
        point=record.point,
        t_from=_optional_time(record.t_from),
        t_to=_optional_time(record.t_to),
        epoch=record.epoch,
        from_seq=record.from_seq,
        to_seq=record.to_seq,
    )


def block_entries(
    topic: str, block: Block, received_at: float, catalogue: Catalogue
) -> BlockEntries:
    """What a verified block puts in the normalized tables, and an audit row per record left out."""
    readings: list[ReadingEntry] = []
    alarms: list[AlarmEntry] = []
    gaps: list[GapEntry] = []
    rejected: list[AuditEntry] = []
    for idx, record in enumerate(block.records):
        try:
            # The common case first and by exact type: a `match` costs a class pattern per record.
            if type(record) is Reading:
                readings.append(normalize_reading(idx, record, catalogue))
                continue
            match record:
                case Reading():
                    readings.append(normalize_reading(idx, record, catalogue))
                case AlarmRecord():
                    alarms.append(normalize_alarm(idx, record, catalogue))
                case GapRecord():
                    gaps.append(_gap(idx, record))
                case KeyRecord():
                    pass  # judged against the block's signature (collector.ingest.keys)
        except RecordRejectedError as rejection:
            point = getattr(record, "point", None)
            rejected.append(
                record_audit(
                    topic,
                    block,
                    received_at,
                    idx,
                    reason=rejection.reason,
                    detail=f" point {point}: {rejection.detail}",
                )
            )
    return BlockEntries(tuple(readings), tuple(alarms), tuple(gaps), tuple(rejected))


def record_audit(
    topic: str, block: Block, at: float, idx: int, *, reason: Reason, detail: str
) -> AuditEntry:
    """The audit row of record `idx` of `block`, left out: where it stands, then `detail`."""
    header = block.header
    where = f"gateway {header.gateway} epoch {header.epoch} seq {header.seq} record {idx}"
    return AuditEntry(
        at=at,
        gateway=header.gateway,
        topic=topic,
        reason=reason,
        detail=f"{where}{detail}"[:MAX_DETAIL],
        payload_hash=block.digest,
    )


def meta_point(point: PointMeta, catalogue: Catalogue) -> MetaPoint:
    """A meta point with unit and thresholds in the canonical unit where the catalogue says how."""
    indicator = catalogue.get(point.quota)
    if indicator is None or point.unit not in indicator.units:
        return MetaPoint(
            point.point,
            point.quota,
            point.unit,
            point.name,
            point.device,
            dict(point.thresholds),
            point.poll,
        )
    thresholds: dict[str, float] = {}
    for name, limit in sorted(point.thresholds.items()):
        converted = _convert(indicator, limit, point.unit)
        if converted is not None and math.isfinite(converted):
            thresholds[name] = converted
    return MetaPoint(
        point.point, point.quota, indicator.unit, point.name, point.device, thresholds, point.poll
    )
