"""gz/1 records for tests: times as Unix seconds, everything else defaulted to tank 1's level.

The defaults (point T001-LT-01, indicator WHP-LT, metres, level H) are the reading and alarm
most tests need; a test names only what it is about. `iso_time` turns the seconds into the
wire's time text, so a test's times stay plain arithmetic on its own base time.
"""

from __future__ import annotations

from specs.records import AlarmEvent, AlarmRecord, Quality, Reading, iso_time


def reading_at(
    t: float,
    value: float | None,
    *,
    point: str = "T001-LT-01",
    quota: str = "WHP-LT",
    unit: str = "m",
    quality: Quality | None = None,
    flags: tuple[str, ...] = (),
) -> Reading:
    """A reading at Unix second `t`; its quality is good with a value and bad without one
    (a read that failed) unless `quality` says otherwise."""
    if quality is None:
        quality = Quality.GOOD if value is not None else Quality.BAD
    return Reading(point, quota, iso_time(t), value, unit, quality, flags)


def alarm_record(
    alarm_id: str,
    event: AlarmEvent,
    t: float,
    *,
    point: str = "T001-LT-01",
    quota: str = "WHP-LT",
    level: str = "H",
    value: float | None = 8.7,
    threshold: float | None = 8.5,
    unit: str = "m",
    trigger_t: float | None = None,
) -> AlarmRecord:
    """An alarm event as the edge writes it (trigger reading at `trigger_t`, default `t`)."""
    return AlarmRecord(
        alarm_id=alarm_id,
        point=point,
        quota=quota,
        t=iso_time(t),
        event=event,
        level=level,
        value=value,
        threshold=threshold,
        unit=unit,
        trigger_t=iso_time(t if trigger_t is None else trigger_t),
    )
