"""The catalogue data file's rules that its schema cannot say: across fields and entries.

`specs.catalogue.schema` checks each entry's shape; the `Checker` here checks what only the
whole file can show (unknown or doubled codes and levels, units, ranges, the order of
thresholds and of alarm levels) and builds the `Catalogue` when nothing is wrong. Every
problem is kept at its key path, so the loader names file:line for each.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from configkit.durations import parse_duration
from configkit.issues import KeyPath
from specs.block import DOMAINS
from specs.catalogue.model import (
    CLEAR_OPS,
    CODE_PATTERN,
    DERIVED_FAMILY,
    RAISE_OPS,
    RATE_LEVEL,
    AlarmLevel,
    Catalogue,
    Direction,
    Domain,
    Edge,
    Escalation,
    Indicator,
    Kind,
    Op,
    Threshold,
    UnitConversion,
    axis,
)
from specs.catalogue.schema import CatalogueModel, IndicatorModel, ThresholdModel, UnitModel


class Checker:
    """Collects every cross-field problem of one data file, each at its key path."""

    def __init__(self, model: CatalogueModel) -> None:
        self.model = model
        self.problems: list[tuple[KeyPath, str]] = []
        self.domains: dict[str, Domain] = {}
        self.levels: dict[str, AlarmLevel] = {}

    def fail(self, path: KeyPath, message: str) -> None:
        """Keep one problem at its key path (checking goes on)."""
        self.problems.append((path, message))

    def run(self) -> Catalogue:
        """Check the whole file; the catalogue built is good only when `problems` is empty."""
        self._domains()
        self._levels()
        escalation = self._escalation()
        indicators: dict[str, Indicator] = {}
        for index, entry in enumerate(self.model.indicators):
            path: KeyPath = ("indicators", index)
            if entry.code in indicators:
                self.fail((*path, "code"), f"indicator {entry.code} is listed twice")
                continue
            indicator = self._indicator(entry, path)
            if indicator is not None:
                indicators[entry.code] = indicator
        for index, entry in enumerate(self.model.indicators):
            self._compare_to(entry, indicators, ("indicators", index, "compare_to"))
        return Catalogue(indicators, dict(self.domains), dict(self.levels), escalation)

    def _domains(self) -> None:
        for index, entry in enumerate(self.model.domains):
            if entry.code in self.domains:
                self.fail(("domains", index, "code"), f"domain {entry.code} is listed twice")
            self.domains[entry.code] = Domain(entry.code, entry.name_zh, entry.name_en, entry.site)
        site_domains = {code for code, domain in self.domains.items() if domain.site}
        if site_domains != DOMAINS:
            self.fail(
                ("domains",),
                f"site domains {sorted(site_domains)} differ from the wire's {sorted(DOMAINS)}",
            )

    def _levels(self) -> None:
        ranks: set[tuple[str, Direction, int]] = set()
        for index, entry in enumerate(self.model.alarm_levels):
            path: KeyPath = ("alarm_levels", index)
            if entry.level in self.levels:
                self.fail((*path, "level"), f"alarm level {entry.level} is listed twice")
            key = (entry.family, entry.direction, entry.rank)
            if key in ranks and entry.family != DERIVED_FAMILY:
                self.fail((*path, "rank"), f"two {entry.family} levels share rank {entry.rank}")
            ranks.add(key)
            self.levels[entry.level] = AlarmLevel(
                level=entry.level,
                family=entry.family,
                direction=entry.direction,
                rank=entry.rank,
                name_zh=entry.name_zh,
                name_en=entry.name_en,
                source=entry.source,
            )

    def _escalation(self) -> tuple[Escalation, ...]:
        steps: list[Escalation] = []
        seen: set[str] = set()
        for index, entry in enumerate(self.model.escalation):
            path: KeyPath = ("escalation", index)
            low, high = self.levels.get(entry.level), self.levels.get(entry.to)
            if low is None or high is None:
                unknown = entry.level if low is None else entry.to
                self.fail(path, f"alarm level {unknown} is not in alarm_levels")
                continue
            if entry.level in seen:
                self.fail((*path, "level"), f"level {entry.level} escalates twice")
            seen.add(entry.level)
            if (low.family, low.direction) != (high.family, high.direction) or (
                high.rank != low.rank + 1
            ):
                self.fail((*path, "to"), f"{entry.level} must escalate to the next level up")
            steps.append(Escalation(entry.level, entry.count, entry.to, entry.source))
        return tuple(steps)

    def _indicator(self, entry: IndicatorModel, path: KeyPath) -> Indicator | None:
        start = len(self.problems)
        match = CODE_PATTERN.fullmatch(entry.code)
        if match is None or match["domain"] != entry.domain:
            self.fail((*path, "code"), f"code {entry.code} must be {entry.domain}-<SUFFIX>")
        if entry.domain not in self.domains:
            self.fail((*path, "domain"), f"domain {entry.domain} is not in domains")
        units = self._units(entry.units, entry.unit, (*path, "units"), "unit")
        low, high = entry.range
        if not low < high:
            self.fail((*path, "range"), f"range low {low:g} is not below high {high:g}")
        self._kind(entry, path)
        self._alarms(entry, path)
        rate_units = self._rate_units(entry, path)
        defaults = tuple(
            threshold
            for name, raw in entry.thresholds.items()
            if (threshold := self._threshold(entry, name, raw, (*path, "thresholds", name)))
            is not None
        )
        self._threshold_order(defaults, (*path, "thresholds"))
        if len(self.problems) > start:
            return None
        return Indicator(
            code=entry.code,
            domain=entry.domain,
            name_zh=entry.name_zh,
            name_en=entry.name_en,
            unit=entry.unit,
            units=units,
            low=low,
            high=high,
            alarms=tuple(entry.alarms),
            thresholds={t.name: t.canonical for t in defaults},
            source=entry.source,
            kind=entry.kind,
            confidence=entry.confidence,
            defaults=defaults,
            rate_unit=entry.rate_unit,
            rate_units=rate_units,
            compare_to=entry.compare_to,
        )

    def _units(
        self, raw: Mapping[str, UnitModel], canonical: str | None, path: KeyPath, key: str
    ) -> dict[str, UnitConversion]:
        units: dict[str, UnitConversion] = {}
        for name, conversion in raw.items():
            if conversion.factor <= 0:
                # A zero factor loses the value; a negative one turns high alarms into low ones.
                self.fail((*path, name, "factor"), "factor must be positive")
            units[name] = UnitConversion(conversion.factor, conversion.offset)
        if canonical is not None:
            identity = units.get(canonical)
            if identity is None:
                self.fail((*path[:-1], key), f"canonical unit {canonical!r} not in its {path[-1]}")
            elif identity != UnitConversion(1.0, 0.0):
                self.fail(
                    (*path, canonical), "the canonical unit must convert as factor 1, offset 0"
                )
        return units

    def _kind(self, entry: IndicatorModel, path: KeyPath) -> None:
        low, high = entry.range
        if entry.kind is Kind.SWITCH and (low, high, len(entry.units)) != (0.0, 1.0, 1):
            self.fail((*path, "kind"), "a switch has range [0, 1] and a single unit")
        if entry.kind is Kind.COUNT and not (low >= 0 and low.is_integer() and high.is_integer()):
            self.fail((*path, "range"), "a count's range is whole numbers from 0 up")

    def _alarms(self, entry: IndicatorModel, path: KeyPath) -> None:
        seen: set[str] = set()
        for index, level in enumerate(entry.alarms):
            if level not in self.levels:
                known = ", ".join(self.levels)
                self.fail((*path, "alarms", index), f"alarm level {level} is unknown ({known})")
            if level in seen:
                self.fail((*path, "alarms", index), f"alarm level {level} is listed twice")
            seen.add(level)
        # Within one family the vocabulary reads along the value axis (LL, L, H, HH; blue ..
        # red), so a person can check it against the standard at a glance.
        groups: dict[str, list[tuple[bool, int]]] = defaultdict(list)
        for name in entry.alarms:
            if name in self.levels:
                groups[self.levels[name].family].append(axis(self.levels[name]))
        for family, positions in groups.items():
            if positions != sorted(positions):
                self.fail((*path, "alarms"), f"{family} levels must be listed low to high")

    def _rate_units(self, entry: IndicatorModel, path: KeyPath) -> dict[str, UnitConversion]:
        has_rate = RATE_LEVEL in entry.alarms
        if has_rate != (entry.rate_unit is not None) or has_rate != bool(entry.rate_units):
            self.fail(
                (*path, "rate_unit"),
                f"rate_unit and rate_units come with the {RATE_LEVEL!r} alarm, and only with it",
            )
        return self._units(entry.rate_units, entry.rate_unit, (*path, "rate_units"), "rate_unit")

    def _threshold(
        self, entry: IndicatorModel, name: str, raw: ThresholdModel, path: KeyPath
    ) -> Threshold | None:
        level_name = raw.level or name
        level = self.levels.get(level_name)
        if level is None or level_name not in entry.alarms:
            self.fail((*path, "level"), f"level {level_name} is not in this indicator's alarms")
            return None
        is_rate = level_name == RATE_LEVEL
        unit = raw.unit or (entry.rate_unit if is_rate else entry.unit)
        units = entry.rate_units if is_rate else entry.units
        conversion = units.get(unit or "")
        if unit is None or conversion is None:
            self.fail((*path, "unit"), f"unit {unit!r} is not among the indicator's accepted units")
            return None
        window = self._window(raw.window, is_rate=is_rate, path=(*path, "window"))
        op = raw.op or _default_op(level.direction, raw.edge)
        allowed = (RAISE_OPS if raw.edge is Edge.RAISE else CLEAR_OPS)[level.direction]
        if op not in allowed:
            self.fail(
                (*path, "op"), f"a {raw.edge} of {level_name} compares with {sorted(allowed)}"
            )
        canonical = conversion.factor * raw.value + conversion.offset
        low, high = entry.range
        if not is_rate and not low <= canonical <= high:
            self.fail((*path, "value"), f"{raw.value:g} {unit} is outside the indicator's range")
        return Threshold(
            name=name,
            level=level_name,
            edge=raw.edge,
            op=op,
            value=raw.value,
            unit=unit,
            canonical=canonical,
            window=window,
            binding=raw.binding,
            source=raw.source,
        )

    def _window(self, text: str | None, *, is_rate: bool, path: KeyPath) -> float | None:
        if not is_rate:
            if text is not None:
                self.fail(path, "only rate thresholds have a window")
            return None
        if text is None:
            self.fail(path, "a rate threshold needs a window such as 1h or 1d")
            return None
        try:
            return parse_duration(text)
        except ValueError as exc:
            self.fail(path, str(exc))
            return None

    def _threshold_order(self, defaults: tuple[Threshold, ...], path: KeyPath) -> None:
        """More severe raise thresholds of one family sit further out; a clear sits inside."""
        raises = {t.level: t for t in defaults if t.edge is Edge.RAISE and t.level != RATE_LEVEL}
        for threshold in defaults:
            level = self.levels[threshold.level]
            sign = 1.0 if level.direction is Direction.ABOVE else -1.0
            if threshold.edge is Edge.CLEAR:
                raised = raises.get(threshold.level)
                if raised is None:
                    self.fail((*path, threshold.name), f"no raise threshold for {level.level}")
                elif sign * threshold.canonical > sign * raised.canonical:
                    self.fail((*path, threshold.name), f"clears beyond where {level.level} raises")
                continue
            for other in raises.values():
                peer = self.levels[other.level]
                if (peer.family, peer.direction) != (level.family, level.direction):
                    continue
                if peer.rank > level.rank and sign * other.canonical < sign * threshold.canonical:
                    self.fail(
                        (*path, other.name), f"{other.level} is less severe than {level.level}"
                    )

    def _compare_to(
        self, entry: IndicatorModel, indicators: Mapping[str, Indicator], path: KeyPath
    ) -> None:
        if entry.compare_to is None:
            return
        derived = [a for a in entry.alarms if a in self.levels and self._is_derived(a)]
        other = indicators.get(entry.compare_to)
        if other is None:
            self.fail(path, f"compare_to {entry.compare_to} is not an indicator")
        elif (other.domain, other.unit) != (entry.domain, entry.unit):
            self.fail(path, f"compare_to {entry.compare_to} must share domain and unit")
        if not derived:
            self.fail(path, "compare_to needs a derived alarm level (over_staff, ...)")

    def _is_derived(self, level: str) -> bool:
        return self.levels[level].family == DERIVED_FAMILY


def _default_op(direction: Direction, edge: Edge) -> Op:
    upward = (direction is Direction.ABOVE) == (edge is Edge.RAISE)
    return ">=" if upward else "<="
