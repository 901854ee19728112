"""Coal-mine networking text in the MT/T 1201 style (spec-facts 4.1): pure, no I/O.

Two batches, each one "file" of the CS/SS family:

- `AQMC`, analog sensor definitions: one record per (mine, point) with readings in the window;
- `AQSS`, realtime values: one record per stored reading, in the order given.

Text conventions (孙继平 2009): a batch starts with the header record `KJ;<TABLE>|`, fields are
separated by `;`, every record ends with `~`, the batch ends with `‖`. Nothing else separates
records; the two batches are written one per line. Times are `yyyy-MM-dd HH:mm:ss` in China
Standard Time (UTC+8, no daylight saving). Numbers have two decimals, as in the observed AQMC rows,
and `-0.01` means "not set". Text fields (names, locations, codes) cannot carry the format's
delimiters: `;`, `~`, `|`, `‖` and control characters become a space.

Where the values come from:

- `ss_station_code`, `ss_transducer_code`: from the coal point code convention
  `{csMineCode}-{ssStationCode}-{ssTransducerCode}` (spec-facts 6.1), zero-padded to 6 digits.
  A point code of another shape is exported with station `000000` and the point code itself as
  the transducer code: stable and traceable, and visibly not a 6-digit code, so the admin can
  rename the point (`nonconforming_points` lists them).
- `ss_transducer_type`: the M-code of the quota (`MK-M0101` -> `M0101`); `M9999` (other analog)
  for any other quota.
- `ss_transducer_name`: the point's name from the gateway's meta message, else the catalogue's
  Chinese name, else the quota. `ss_transducer_point` (location): the meta's device, else the
  point code. `ss_gisnode_code` and `ss_poffarea_code` are empty: nothing in gz/1 states them.
- `ss_analog_lower` / `ss_analog_high`: the catalogue's plausible range of the quota.
- Alarm, power-off and restore thresholds: from the meta's thresholds (already in the stored
  unit), by the names in `THRESHOLD_NAMES`, first match wins; `-0.01` when none is set.
- `cs_data_time` of an AQMC record: the meta's `issued_at`, else the point's first reading in the
  window.
- `ss_transducer_state`: from the reading's quality, see `TRANSDUCER_STATE`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from collector.readmodel import PointMetaRow, ReadingRow
from specs.catalogue import Catalogue

DATABASE: Final = "KJ"
FIELD_SEPARATOR: Final = ";"
HEADER_END: Final = "|"
RECORD_END: Final = "~"
BATCH_END: Final = "‖"
NOT_SET: Final = "-0.01"
OTHER_ANALOG: Final = "M9999"
FALLBACK_STATION: Final = "000000"
CHINA_STANDARD_TIME: Final = timezone(timedelta(hours=8), "CST")
TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"

AQMC_FIELDS: Final = (
    "cs_mine_code",
    "cs_data_time",
    "ss_transducer_code",
    "ss_station_code",
    "ss_transducer_type",
    "ss_transducer_name",
    "ss_transducer_point",
    "ss_analog_unit",
    "ss_gisnode_code",
    "ss_poffarea_code",
    "ss_analog_lower",
    "ss_analog_high",
    "ss_analog_alarmlow",
    "ss_analog_alarmhigh",
    "ss_analog_pofflow",
    "ss_analog_poffhigh",
    "ss_analog_ponlow",
    "ss_analog_ponhigh",
)
AQSS_FIELDS: Final = (
    "cs_mine_code",
    "cs_data_time",
    "ss_station_code",
    "ss_transducer_code",
    "ss_analog_value",
    "ss_switching_value",
    "ss_transducer_state",
)

# Meta threshold names per AQMC threshold column, in order of preference: the coal vocabulary
# first, then the generic four-level names where they mean the same (an alarm limit).
THRESHOLD_NAMES: Final[Mapping[str, tuple[str, ...]]] = {
    "ss_analog_alarmlow": ("alarm_low", "low"),
    "ss_analog_alarmhigh": ("alarm_high", "alarm", "high"),
    "ss_analog_pofflow": ("power_off_low",),
    "ss_analog_poffhigh": ("power_off_high", "power_off"),
    "ss_analog_ponlow": ("restore_low",),
    "ss_analog_ponhigh": ("restore_high", "restore"),
}

# Only "0" (normal) is observed in public AQSS rows; the MT/T 1201.1 state dictionary was not
# found (spec-facts 6.7 item 4). The non-zero codes are ours until the province confirms them.
TRANSDUCER_STATE: Final[Mapping[str, str]] = {"good": "0", "uncertain": "1", "bad": "2"}

_COAL_POINT: Final = re.compile(
    r"^(?P<mine>[0-9]{9})-(?P<station>[0-9]{1,6})-(?P<sensor>[0-9]{1,6})$"
)
_COAL_QUOTA: Final = re.compile(r"^MK-(?P<code>M[0-9]{4})$")
_UNSAFE: Final = re.compile(r"[;~|‖\x00-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class CoalReading:
    """A stored reading of a coal gateway with the mine code of the block it came in."""

    mine_code: str
    reading: ReadingRow


@dataclass(frozen=True, slots=True)
class SensorCode:
    """Station and transducer code of a point; `conforming` when derived from its code."""

    station: str
    transducer: str
    conforming: bool


@dataclass(frozen=True, slots=True)
class PointSeen:
    """A point of the window: its first reading's quota, unit and time."""

    mine_code: str
    point: str
    quota: str
    unit: str
    first_t: float


def sensor_code(point: str) -> SensorCode:
    """Station and transducer code from `{mine}-{station}-{transducer}`, or the fallback."""
    match = _COAL_POINT.fullmatch(point)
    if match is None:
        return SensorCode(FALLBACK_STATION, _text(point), conforming=False)
    return SensorCode(match["station"].zfill(6), match["sensor"].zfill(6), conforming=True)


def transducer_type(quota: str) -> str:
    """The M-code of a coal quota (`MK-M0101` -> `M0101`); M9999 for any other quota."""
    match = _COAL_QUOTA.fullmatch(quota)
    return OTHER_ANALOG if match is None else match["code"]


def data_time(t: float) -> str:
    """`yyyy-MM-dd HH:mm:ss` in China Standard Time (fractions of a second dropped)."""
    return datetime.fromtimestamp(t, UTC).astimezone(CHINA_STANDARD_TIME).strftime(TIME_FORMAT)


def number(value: float | None) -> str:
    """Two decimals; NOT_SET for no value."""
    if value is None:
        return NOT_SET
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def _text(value: str) -> str:
    return _UNSAFE.sub(" ", value)


def record(fields: Sequence[str]) -> str:
    """One record: fields joined by `;`, ended by `~` (fields must be safe already)."""
    return FIELD_SEPARATOR.join(fields) + RECORD_END


def header(table: str) -> str:
    """The header record of a batch of `table` (`KJ;AQSS|`)."""
    return f"{DATABASE}{FIELD_SEPARATOR}{table}{HEADER_END}"


def batch(table: str, records: Iterable[str]) -> Iterator[str]:
    """The pieces of one batch: header, records, batch end."""
    yield header(table)
    yield from records
    yield BATCH_END


def note_points(
    seen: Mapping[tuple[str, str], PointSeen], readings: Iterable[CoalReading]
) -> dict[tuple[str, str], PointSeen]:
    """`seen` extended by the (mine, point) pairs of `readings` (first reading wins)."""
    noted = dict(seen)
    for coal in readings:
        reading = coal.reading
        key = (coal.mine_code, reading.point)
        held = noted.get(key)
        if held is None or reading.t < held.first_t:
            noted[key] = PointSeen(
                coal.mine_code, reading.point, reading.quota, reading.unit, reading.t
            )
    return noted


def _threshold(info: PointMetaRow | None, column: str) -> str:
    if info is None:
        return NOT_SET
    for name in THRESHOLD_NAMES[column]:
        if name in info.thresholds:
            return number(info.thresholds[name])
    return NOT_SET


def aqmc_record(seen: PointSeen, info: PointMetaRow | None, catalogue: Catalogue) -> str:
    """The AQMC definition record of one point."""
    code = sensor_code(seen.point)
    indicator = catalogue.get(seen.quota)
    if info is not None:
        name = info.name
    elif indicator is not None:
        name = indicator.name_zh
    else:
        name = seen.quota
    fields = {
        "cs_mine_code": _text(seen.mine_code),
        "cs_data_time": data_time(seen.first_t if info is None else info.issued_at),
        "ss_transducer_code": code.transducer,
        "ss_station_code": code.station,
        "ss_transducer_type": transducer_type(seen.quota),
        "ss_transducer_name": _text(name),
        "ss_transducer_point": _text(seen.point if info is None else info.device),
        "ss_analog_unit": _text(seen.unit),
        "ss_gisnode_code": "",
        "ss_poffarea_code": "",
        "ss_analog_lower": NOT_SET if indicator is None else number(indicator.low),
        "ss_analog_high": NOT_SET if indicator is None else number(indicator.high),
    }
    fields |= {column: _threshold(info, column) for column in THRESHOLD_NAMES}
    return record([fields[name] for name in AQMC_FIELDS])


def aqss_record(coal: CoalReading) -> str:
    """The AQSS realtime record of one reading (analog: the switching value stays empty)."""
    reading = coal.reading
    code = sensor_code(reading.point)
    fields = {
        "cs_mine_code": _text(coal.mine_code),
        "cs_data_time": data_time(reading.t),
        "ss_station_code": code.station,
        "ss_transducer_code": code.transducer,
        "ss_analog_value": "" if reading.value is None else number(reading.value),
        "ss_switching_value": "",
        "ss_transducer_state": TRANSDUCER_STATE.get(reading.quality, TRANSDUCER_STATE["bad"]),
    }
    return record([fields[name] for name in AQSS_FIELDS])


def _definition_order(seen: PointSeen) -> tuple[str, str, str, str]:
    code = sensor_code(seen.point)
    return (seen.mine_code, code.station, code.transducer, seen.point)


def aqmc_batch(
    seen: Mapping[tuple[str, str], PointSeen],
    infos: Mapping[str, PointMetaRow],
    catalogue: Catalogue,
) -> str:
    """The whole AQMC batch, definitions ordered by (mine, station, transducer)."""
    ordered = sorted(seen.values(), key=_definition_order)
    return "".join(batch("AQMC", (aqmc_record(s, infos.get(s.point), catalogue) for s in ordered)))


def nonconforming_points(seen: Iterable[PointSeen]) -> tuple[str, ...]:
    """Points whose code does not follow `{mine}-{station}-{transducer}`, sorted."""
    return tuple(sorted({s.point for s in seen if not sensor_code(s.point).conforming}))


def export_text(
    readings: Sequence[CoalReading], infos: Mapping[str, PointMetaRow], catalogue: Catalogue
) -> str:
    """AQMC then AQSS for `readings` (kept in their order), one batch per line."""
    aqmc = aqmc_batch(note_points({}, readings), infos, catalogue)
    aqss = "".join(batch("AQSS", (aqss_record(r) for r in readings)))
    return f"{aqmc}\n{aqss}\n"
