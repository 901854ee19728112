"""Alarm state: what the evaluator remembers between readings, and its durable encoding.

The state is everything an alarm decision depends on besides the current reading: which
alarms are active (with their ids), the rate windows, the latest values of points other
alarms compare against, and since when an overtime condition holds. It is small and bounded
(a rate window keeps at most `WINDOW_SAMPLES + 1` samples), so the shell can store all of it
with every block that changes it.

Error tree::

    AlarmStateError     stored state bytes cannot be read back
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from edge_agent.core.alarms.rules import AlarmRules
from specs.wirejson import is_count, is_number

STATE_VERSION = 1
"""Version of the encoding written by `encode_state`."""


class AlarmStateError(ValueError):
    """Stored alarm state is not what `encode_state` writes."""


@dataclass(frozen=True, slots=True)
class ActiveAlarm:
    """An alarm that was raised and not yet cleared."""

    alarm_id: str
    level: str
    raised_t: str
    """The trigger time of the raise (its reading's `t`)."""


Sample = tuple[float, float]
"""(unix seconds, canonical value) of one reading kept in a rate window."""


@dataclass(frozen=True, slots=True)
class AlarmState:
    """What the evaluator knows after the readings it has seen.

    `namespace` makes alarm ids unique beyond this state's life (the shell uses the outbox
    epoch); `serial` counts raises. Keys of `active`, `windows` and `since` are rule slots.
    """

    namespace: str
    serial: int = 0
    active: Mapping[str, ActiveAlarm] = field(default_factory=dict)
    windows: Mapping[str, tuple[Sample, ...]] = field(default_factory=dict)
    latest: Mapping[str, float] = field(default_factory=dict)
    since: Mapping[str, float] = field(default_factory=dict)


def fit_state(state: AlarmState, rules: AlarmRules) -> AlarmState:
    """Drop what no rule uses any more (after the site map changed).

    Active alarms are kept: an alarm whose rule is gone is cleared by the next usable
    reading of its point, so every raise still gets its clear.
    """
    rate_slots, held_slots, tracked = rules.rate_slots, rules.held_slots, rules.tracked_points
    return AlarmState(
        namespace=state.namespace,
        serial=state.serial,
        active=dict(state.active),
        windows={k: v for k, v in state.windows.items() if k in rate_slots},
        latest={k: v for k, v in state.latest.items() if k in tracked},
        since={k: v for k, v in state.since.items() if k in held_slots},
    )


def encode_state(state: AlarmState) -> bytes:
    """The state as compact, deterministic JSON bytes."""
    document = {
        "version": STATE_VERSION,
        "namespace": state.namespace,
        "serial": state.serial,
        "active": {
            slot: {"alarm_id": a.alarm_id, "level": a.level, "raised_t": a.raised_t}
            for slot, a in sorted(state.active.items())
        },
        "windows": {slot: [list(s) for s in w] for slot, w in sorted(state.windows.items())},
        "latest": dict(sorted(state.latest.items())),
        "since": dict(sorted(state.since.items())),
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def decode_state(data: bytes) -> AlarmState:
    """Read back what `encode_state` wrote; raise AlarmStateError on anything else."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise AlarmStateError(f"alarm state is not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("version") != STATE_VERSION:
        raise AlarmStateError(f"alarm state is not version {STATE_VERSION}")
    serial = document.get("serial")
    if not is_count(serial):
        raise AlarmStateError("alarm state serial must be a count")
    return AlarmState(
        namespace=_text(document.get("namespace"), "namespace"),
        serial=serial,
        active={
            slot: _active(entry)
            for slot, entry in _mapping(document.get("active"), "active").items()
        },
        windows={
            slot: tuple(_sample(s) for s in _list(samples, "window"))
            for slot, samples in _mapping(document.get("windows"), "windows").items()
        },
        latest={
            point: _finite(value, "latest")
            for point, value in _mapping(document.get("latest"), "latest").items()
        },
        since={
            slot: _finite(value, "since")
            for slot, value in _mapping(document.get("since"), "since").items()
        },
    )


def _active(value: object) -> ActiveAlarm:
    entry = _mapping(value, "active alarm")
    return ActiveAlarm(
        alarm_id=_text(entry.get("alarm_id"), "alarm_id"),
        level=_text(entry.get("level"), "level"),
        raised_t=_text(entry.get("raised_t"), "raised_t"),
    )


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise AlarmStateError(f"alarm state {what} must be text")
    return value


def _mapping(value: object, what: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise AlarmStateError(f"alarm state {what} must be an object")
    return value


def _list(value: object, what: str) -> list[object]:
    if not isinstance(value, list):
        raise AlarmStateError(f"alarm state {what} must be a list")
    return value


def _finite(value: object, what: str) -> float:
    if not is_number(value):
        raise AlarmStateError(f"alarm state {what} must hold finite numbers")
    return float(value)


def _sample(value: object) -> Sample:
    pair = _list(value, "window sample")
    if len(pair) != 2:  # noqa: PLR2004 - (time, value)
        raise AlarmStateError("alarm state window samples must be [time, value]")
    return _finite(pair[0], "window"), _finite(pair[1], "window")
