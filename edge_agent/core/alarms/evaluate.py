"""Alarm evaluation: readings and state in, raise/clear events and the next state out.

Pure: no clock, no I/O. Time is the readings' own `t`, so replaying the same readings from
the same state gives the same events, byte for byte (and the same alarm ids).

Rules of the game, for every kind of alarm:

- A reading whose quality is BAD (or that has no value) never raises or clears anything: the
  alarm state holds until a usable reading arrives. A link loss cannot clear a gas alarm.
  UNCERTAIN readings (out of range, clock not synced) carry a measured value and count.
- An active alarm whose rule left the site map (after a restart with a new map) is cleared
  by the next usable reading of its point, with a detail saying why.
- An event names the reading that triggered it: `point` and `trigger_t` are that reading's
  point and `t` (and `t` is the same time). Item escalation events name the item's point
  whose reading changed the item's colour.
- `alarm_id` is `{slot}/{namespace}.{serial}`: a clear carries the id of the raise it ends,
  and a slot is raised again only after it was cleared.
- Within one reading, clears come first (most severe first), then raises (least severe
  first): an alarm stream never shows HH without H, or an item orange before yellow.
- `threshold` is the limit the value crossed: the setpoint on a raise, the clear point
  (setpoint minus deadband, or the restore limit) on a clear.
- At a limit's exact value, setpoint and rate alarms compare as the catalogue words that
  threshold (`> 10 mm/d` does not raise at 10, `>= 1.0 %CH4` does; `inclusive` in the rules);
  a clear point is then on the other side. Derived and overtime alarms raise beyond their
  limit (`>`) and clear at or within it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from configkit.durations import format_duration
from edge_agent.core.alarms.rules import (
    COLOURS,
    ESCALATION,
    HELD_UNIT,
    ITEM_PREFIX,
    ITEM_UNIT,
    AlarmRules,
    CompareRule,
    HeldRule,
    ItemRule,
    LevelRule,
    PointRules,
    RateRule,
    item_level,
)
from edge_agent.core.alarms.state import ActiveAlarm, AlarmState, Sample
from specs.catalogue import RATE_LEVEL
from specs.records import AlarmEvent, AlarmRecord, Quality, Reading, Record, parse_iso_time

WINDOW_SAMPLES = 32
"""A rate window keeps one sample per 1/32 of its length (plus the newest): bounded memory."""

MIN_SPAN = 0.5
"""A rate is judged once the samples span at least this share of the window."""

# How many points at the colour below an item colour lift the item to it (yellow: 4 blue).
_NEEDED = {COLOURS.index(to) + 1: count for _, count, to in ESCALATION}


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The outcome of evaluating a batch of records.

    `records` is the batch with each reading's events right after it; `state` is the
    input state object itself when nothing changed, so a caller can skip saving it.
    """

    records: tuple[Record, ...]
    events: tuple[AlarmRecord, ...]
    state: AlarmState


def evaluate(
    rules: AlarmRules, state: AlarmState, reading: Reading
) -> tuple[tuple[AlarmRecord, ...], AlarmState]:
    """Evaluate one reading: the events it triggers and the state after it."""
    outcome = evaluate_batch(rules, state, (reading,))
    return outcome.events, outcome.state


def evaluate_batch(rules: AlarmRules, state: AlarmState, records: Sequence[Record]) -> Evaluation:
    """Evaluate readings in order; other records pass through untouched."""
    work = _Work(state, rules)
    out: list[Record] = []
    events: list[AlarmRecord] = []
    with_rules = rules.points
    for record in records:
        out.append(record)
        # A reading of a point without rules changes nothing unless an orphaned alarm waits
        # for it (most readings of most sites: skipped without a call).
        if isinstance(record, Reading) and (record.point in with_rules or work.has_orphans):
            found = work.reading(record)
            out.extend(found)
            events.extend(found)
    return Evaluation(tuple(out), tuple(events), work.result())


class _Work:
    """A private, mutable copy of the state while one batch is evaluated."""

    def __init__(self, state: AlarmState, rules: AlarmRules) -> None:
        self._base = state
        self._rules = rules
        self._serial = state.serial
        self._active = dict(state.active)
        self._windows = dict(state.windows)
        self._latest = dict(state.latest)
        self._since = dict(state.since)
        self._changed = False
        # Alarms whose rule left the site map; each is cleared by its point's next reading.
        self._orphans = [slot for slot in state.active if slot not in rules.slots]

    @property
    def has_orphans(self) -> bool:
        """Whether an active alarm lost its rule and waits for its point's next reading."""
        return bool(self._orphans)

    def result(self) -> AlarmState:
        if not self._changed:
            return self._base
        return AlarmState(
            namespace=self._base.namespace,
            serial=self._serial,
            active=self._active,
            windows=self._windows,
            latest=self._latest,
            since=self._since,
        )

    # --- one reading --------------------------------------------------------------------

    def reading(self, reading: Reading) -> list[AlarmRecord]:
        rules = self._rules.points.get(reading.point)
        value = reading.value
        usable = value is not None and reading.quality is not Quality.BAD
        if rules is not None and rules.tracked:
            self._track(reading.point, value if usable else None)
        if value is None or not usable:
            return []
        events = self._orphan_clears(reading, value) if self._orphans else []
        if rules is not None:
            events += self._point(rules, reading, value)
        return events

    def _point(self, rules: PointRules, reading: Reading, value: float) -> list[AlarmRecord]:
        events = self._levels(rules.levels, reading, value)
        if rules.rates or rules.held:
            t = parse_iso_time(reading.t)
            for rate in rules.rates:
                events += self._rate(rate, reading, value, t)
            for held in rules.held:
                events += self._held(held, reading, value, t)
        for compare in rules.compares:
            events += self._compare(compare, reading, value)
        for item in rules.items:
            events += self._item(item, reading)
        return events

    def _track(self, point: str, value: float | None) -> None:
        # A BAD reading of a limit point withdraws its value: comparing against a stale
        # rated staffing would raise or clear on a number nobody measured.
        if value is None:
            if point in self._latest:
                del self._latest[point]
                self._changed = True
        elif self._latest.get(point) != value:
            self._latest[point] = value
            self._changed = True

    def _levels(
        self, rules: Sequence[LevelRule], reading: Reading, value: float
    ) -> list[AlarmRecord]:
        clears = [r for r in rules if r.slot in self._active and r.released(value)]
        raises = [r for r in rules if r.slot not in self._active and r.reached(value)]
        events = [
            self._clear(r.slot, reading, _Figures(value, r.clear_at, reading.unit))
            for r in reversed(clears)
        ]
        events += [
            self._raise(r.slot, r.level, reading, _Figures(value, r.setpoint, reading.unit))
            for r in raises
        ]
        return events

    def _rate(self, rule: RateRule, reading: Reading, value: float, t: float) -> list[AlarmRecord]:
        samples = self._windows.get(rule.slot, ())
        if samples and samples[-1][0] > t:
            samples = ()  # the wall clock went back: the old samples cannot be compared
        kept: list[Sample] = [s for s in samples if s[0] >= t - rule.window]
        rate: float | None = None
        span = t - kept[0][0] if kept else 0.0
        if kept and span >= rule.window * MIN_SPAN:
            # Multiplied first: a change of exactly the limit over the window gives exactly
            # the limit (10 mm over 1 d is 10.0 mm/d), so the boundary compares as worded.
            rate = abs(value - kept[0][1]) * rule.per_second / span
        if not kept or t - kept[-1][0] >= rule.window / WINDOW_SAMPLES:
            kept.append((t, value))
        if tuple(kept) != self._windows.get(rule.slot, ()):
            self._windows[rule.slot] = tuple(kept)
            self._changed = True
        if rate is None:
            return []
        detail = f"change over {_span(span)}"
        if rule.slot not in self._active and rule.reached(rate):
            figures = _Figures(rate, rule.limit, rule.unit, detail)
            return [self._raise(rule.slot, RATE_LEVEL, reading, figures)]
        if rule.slot in self._active and rule.released(rate):
            return [
                self._clear(rule.slot, reading, _Figures(rate, rule.clear_at, rule.unit, detail))
            ]
        return []

    def _compare(self, rule: CompareRule, reading: Reading, value: float) -> list[AlarmRecord]:
        limit = rule.limit if rule.limit_point is None else self._latest.get(rule.limit_point)
        if limit is None:
            return []  # the limit point has no usable value yet: hold
        related = rule.limit_point
        if rule.slot not in self._active and value > limit:
            figures = _Figures(value, limit, rule.unit, related=related)
            return [self._raise(rule.slot, rule.level, reading, figures)]
        clear_at = limit - rule.deadband
        if rule.slot in self._active and value <= clear_at:
            figures = _Figures(value, clear_at, rule.unit, related=related)
            return [self._clear(rule.slot, reading, figures)]
        return []

    def _held(self, rule: HeldRule, reading: Reading, value: float, t: float) -> list[AlarmRecord]:
        start = self._since.get(rule.slot)
        if rule.holds(value):
            if start is None or start > t:  # a new condition, or the wall clock went back
                start = t
                self._since[rule.slot] = t
                self._changed = True
            held = t - start
            if rule.slot not in self._active and held > rule.limit:
                figures = _Figures(held, rule.limit, HELD_UNIT, f"held {_span(held)}")
                return [self._raise(rule.slot, rule.level, reading, figures)]
            return []
        if start is not None:
            del self._since[rule.slot]
            self._changed = True
        if rule.slot in self._active:
            held = max(t - start, 0.0) if start is not None else 0.0
            figures = _Figures(held, rule.limit, HELD_UNIT, f"ended after {_span(held)}")
            return [self._clear(rule.slot, reading, figures)]
        return []

    def _item(self, item: ItemRule, reading: Reading) -> list[AlarmRecord]:
        levels = [self._colour_of(point) for point in item.points]
        target = item_level(levels)
        counts = [sum(1 for level in levels if level >= k) for k in range(1, len(COLOURS) + 1)]
        detail = (
            f"item {item.item}: "
            + ", ".join(f"{n} at {c}+" for c, n in zip(COLOURS, counts, strict=True))
            + f" of {len(levels)} points"
        )
        events = []
        for k in range(len(COLOURS), 0, -1):
            slot = item.slot(COLOURS[k - 1])
            if k > target and slot in self._active:
                events.append(self._clear(slot, reading, _item_figures(counts, k, detail)))
        for k in range(1, target + 1):
            slot = item.slot(COLOURS[k - 1])
            if slot not in self._active:
                figures = _item_figures(counts, k, detail)
                events.append(self._raise(slot, COLOURS[k - 1], reading, figures))
        return events

    def _colour_of(self, point: str) -> int:
        return max(
            (k for k, c in enumerate(COLOURS, start=1) if f"{point}/{c}" in self._active),
            default=0,
        )

    def _orphan_clears(self, reading: Reading, value: float) -> list[AlarmRecord]:
        events = []
        for slot in list(self._orphans):
            subject = slot.rpartition("/")[0]
            # An item, or a point gone from the site map, has no readings of its own to end
            # its alarms: the first usable reading of any point does.
            gone = subject.startswith(ITEM_PREFIX) or subject not in self._rules.site_points
            if subject == reading.point or gone:
                self._orphans.remove(slot)
                figures = _Figures(value, None, reading.unit, "the site map no longer has it")
                events.append(self._clear(slot, reading, figures))
        return events

    # --- events -------------------------------------------------------------------------

    def _raise(self, slot: str, level: str, reading: Reading, figures: _Figures) -> AlarmRecord:
        self._serial += 1
        namespace = self._base.namespace
        alarm_id = f"{slot}/{namespace}.{self._serial}" if namespace else f"{slot}/{self._serial}"
        self._active[slot] = ActiveAlarm(alarm_id, level, reading.t)
        self._changed = True
        return _event(alarm_id, AlarmEvent.RAISE, level, reading, figures)

    def _clear(self, slot: str, reading: Reading, figures: _Figures) -> AlarmRecord:
        active = self._active.pop(slot)
        self._changed = True
        return _event(active.alarm_id, AlarmEvent.CLEAR, active.level, reading, figures)


@dataclass(frozen=True, slots=True)
class _Figures:
    """What an event says besides its id, level and reading."""

    value: float
    threshold: float | None
    unit: str
    detail: str | None = None
    related: str | None = None


def _span(seconds: float) -> str:
    return format_duration(round(seconds, 3))


def _event(
    alarm_id: str, event: AlarmEvent, level: str, reading: Reading, figures: _Figures
) -> AlarmRecord:
    return AlarmRecord(
        alarm_id=alarm_id,
        point=reading.point,
        quota=reading.quota,
        t=reading.t,
        event=event,
        level=level,
        value=figures.value,
        threshold=figures.threshold,
        unit=figures.unit,
        trigger_t=reading.t,
        related=figures.related,
        detail=figures.detail,
    )


def _item_figures(counts: list[int], level: int, detail: str) -> _Figures:
    """The figures of an item event at `level`: the count that decides it.

    The item is at `level` when one of its points is (value: points at `level` or above,
    threshold 1) or when enough points sit one colour below (value: those points, threshold:
    the escalation count).
    """
    direct = counts[level - 1]
    if level == 1 or direct:
        return _Figures(float(direct), 1.0, ITEM_UNIT, detail)
    return _Figures(float(counts[level - 2]), float(_NEEDED[level]), ITEM_UNIT, detail)
