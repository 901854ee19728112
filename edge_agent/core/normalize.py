"""From a driver's raw sample to a wire reading: scale, offset, unit, range and clock flags."""

from __future__ import annotations

import math
import re

from drivers.base import Quality as DriverQuality
from drivers.base import RawSample
from edge_agent.core.points import ResolvedPoint
from specs.catalogue import Indicator
from specs.records import Quality, Reading, iso_time

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
        flags.append("clock_unsynced")
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
