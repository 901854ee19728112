"""From a driver's raw sample to a wire reading: scale, offset, unit, range and clock flags.

`normalize` is the rule for one sample. `normalize_read` applies it to every sample of one
read, the way an agent polling thousands of points a second needs it: the time text is made
once per distinct sample time (a read's samples share theirs), and the common case - a good
value without flags of its own, inside the plausible range - is computed from constants
prepared once per point (`PointNormalizer`), with the same arithmetic in the same order, so
its readings are exactly `normalize`'s. Every other sample goes through `normalize`.
`normalize_columns` is `normalize_read` of a columnar read (`drivers.base.ReadColumns`): the
common case straight from the columns, without a sample object per point.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from drivers.base import Quality as DriverQuality
from drivers.base import RawSample, ReadColumns
from edge_agent.core.points import ResolvedPoint
from specs.catalogue import Indicator
from specs.records import Quality, Reading, iso_time

_UNSYNCED = ("clock_unsynced",)
_QUALITY = {
    DriverQuality.GOOD: Quality.GOOD,
    DriverQuality.UNCERTAIN: Quality.UNCERTAIN,
    DriverQuality.BAD: Quality.BAD,
}


def normalize(
    sample: RawSample, point: ResolvedPoint, indicator: Indicator, *, clock_synced: bool
) -> Reading:
    """Turn a raw sample into a reading in the indicator's canonical unit.

    Garbage never raises: a missing or non-finite value is a BAD reading, a value outside
    the indicator's plausible range keeps its value but is UNCERTAIN with `out_of_range`.
    """
    flags = list(sample.flags)
    if not clock_synced:
        flags.extend(_UNSYNCED)
    quality = _QUALITY[sample.quality]
    value: float | None = None
    if sample.value is not None and quality is not Quality.BAD:
        scaled = sample.value * point.scale + point.offset
        canonical = indicator.to_canonical(scaled, point.unit)
        if math.isfinite(canonical):
            value = canonical
            if not indicator.plausible(canonical):
                quality = Quality.UNCERTAIN
                flags.append("out_of_range")
        else:
            quality = Quality.BAD
            flags.append("not_finite")
    if value is None:
        quality = Quality.BAD
        if sample.error:
            flag = _error_flag(sample.error)
            # OPC UA drivers already name the status (BadSensorFailure) in the flags.
            if flag not in {f.lower() for f in flags}:
                flags.append(flag)
    return Reading(
        point=point.point,
        quota=point.quota,
        t=iso_time(sample.t_wall),
        value=value,
        unit=indicator.unit,
        quality=quality,
        flags=tuple(flags),
    )


def _error_flag(error: str) -> str:
    """A short machine-readable token from a driver's error text (before any `:` or `(`)."""
    head = error.split(":", 1)[0].split("(", 1)[0].lower()
    token = "_".join(re.findall(r"[a-z0-9]+", head))[:32].rstrip("_")
    return token or "read_failed"


@dataclass(frozen=True, slots=True)
class PointNormalizer:
    """One point's normalization, with the constants of its common case prepared.

    canonical = (raw * scale + offset) * factor + shift, as `normalize` computes it through
    `Indicator.to_canonical`. `fast` is False when the common case cannot be taken for
    granted (a unit the indicator does not accept, an open-ended plausible range): every
    sample then goes through `normalize`.
    """

    point: ResolvedPoint
    indicator: Indicator
    factor: float
    shift: float
    low: float
    high: float
    fast: bool
    # The point's own fields, one attribute away (read for every reading).
    name: str
    quota: str
    unit: str  # the indicator's (canonical) unit, which readings carry
    scale: float
    offset: float

    @classmethod
    def of(cls, point: ResolvedPoint, indicator: Indicator) -> PointNormalizer:
        """Prepare `point`, read in its configured unit, for `indicator`."""
        conversion = indicator.units.get(point.unit)
        bounded = math.isfinite(indicator.low) and math.isfinite(indicator.high)
        return cls(
            point=point,
            indicator=indicator,
            factor=1.0 if conversion is None else conversion.factor,
            shift=0.0 if conversion is None else conversion.offset,
            low=indicator.low,
            high=indicator.high,
            fast=conversion is not None and bounded,
            name=point.point,
            quota=point.quota,
            unit=indicator.unit,
            scale=point.scale,
            offset=point.offset,
        )


def normalize_read(
    samples: Sequence[RawSample],
    points: Mapping[str, PointNormalizer],
    *,
    clock_synced: bool,
) -> list[Reading]:
    """`normalize` every sample of one read whose key is in `points`, in order."""
    readings: list[Reading] = []
    times: dict[float, str] = {}
    good, good_reading = DriverQuality.GOOD, Quality.GOOD
    flags = () if clock_synced else _UNSYNCED
    for sample in samples:
        prepared = points.get(sample.key)
        if prepared is None:
            continue
        value = sample.value
        if value is not None and prepared.fast and sample.quality is good and not sample.flags:
            point = prepared.point
            canonical = (value * point.scale + point.offset) * prepared.factor + prepared.shift
            # Inside a finite range implies finite; NaN fails both comparisons.
            if prepared.low <= canonical <= prepared.high:
                t = times.get(sample.t_wall)
                if t is None:
                    t = times[sample.t_wall] = iso_time(sample.t_wall)
                readings.append(
                    Reading(
                        point=point.point,
                        quota=point.quota,
                        t=t,
                        value=canonical,
                        unit=prepared.indicator.unit,
                        quality=good_reading,
                        flags=flags,
                    )
                )
                continue
        readings.append(
            normalize(sample, prepared.point, prepared.indicator, clock_synced=clock_synced)
        )
    return readings


def normalize_columns(
    columns: ReadColumns,
    prepared: Sequence[PointNormalizer | None],
    *,
    clock_synced: bool,
) -> list[Reading]:
    """`normalize_read` of `columns.samples()`, without a sample object per columnar point.

    `prepared[i]` prepares the point `columns.keys[i]`; None leaves that point out.
    """
    readings: list[Reading] = []
    append = readings.append
    times: dict[float, str] = {}
    good, good_reading = DriverQuality.GOOD, Quality.GOOD
    flags = () if clock_synced else _UNSYNCED
    others = columns.others
    for key, norm, value, t_wall, t_mono in zip(
        columns.keys, prepared, columns.values, columns.t_wall, columns.t_mono, strict=True
    ):
        if norm is None:
            continue
        if value is None:
            sample = others[key]
        else:
            if norm.fast:
                canonical = (value * norm.scale + norm.offset) * norm.factor + norm.shift
                # As in normalize_read: inside a finite range implies finite.
                if norm.low <= canonical <= norm.high:
                    t = times.get(t_wall)
                    if t is None:
                        t = times[t_wall] = iso_time(t_wall)
                    append(
                        Reading(norm.name, norm.quota, t, canonical, norm.unit, good_reading, flags)
                    )
                    continue
            sample = RawSample(key, value, good, t_wall, t_mono)
        append(normalize(sample, norm.point, norm.indicator, clock_synced=clock_synced))
    return readings
