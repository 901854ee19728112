"""The catalogue's types: indicators, units, alarm levels and thresholds, as checked data.

`specs.catalogue` parses and checks the data file into these; everything else only reads them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

from configkit.issues import ConfigIssue

DATA_FILE: Final = "specs/catalogue/indicators.yaml"
"""How errors name the shipped data file."""

FORMAT_VERSION: Final = 1
RATE_LEVEL: Final = "rate"
"""The alarm level whose thresholds are rates over a window, in the indicator's rate units."""
DERIVED_FAMILY: Final = "derived"
"""Alarm family of levels that compare a point against another (`compare_to`)."""

CODE_PATTERN = re.compile(r"^(?P<domain>[A-Z]+)-(?P<suffix>[A-Z0-9]+)$")


class CatalogueError(ValueError):
    """The catalogue data file breaks its own rules."""

    def __init__(self, problem: str | Iterable[ConfigIssue]) -> None:
        # A plain message is a misuse of a sound catalogue (an unaccepted unit), not a file issue.
        self.issues = () if isinstance(problem, str) else tuple(problem)
        super().__init__(
            problem if isinstance(problem, str) else "\n".join(str(i) for i in self.issues)
        )


class Kind(enum.StrEnum):
    """What sort of quantity an indicator is."""

    ANALOG = "analog"
    SWITCH = "switch"  # a 0/1 state
    COUNT = "count"  # whole things, such as persons


class Direction(enum.StrEnum):
    """Which way a value moves to raise an alarm level."""

    ABOVE = "above"
    BELOW = "below"


class Edge(enum.StrEnum):
    """Whether a threshold raises its level or clears it (coal: power-off vs. restore)."""

    RAISE = "raise"
    CLEAR = "clear"


class Binding(enum.StrEnum):
    """How a standard's threshold binds a site."""

    LIMIT = "limit"  # the laxest allowed setting: a site may be stricter, never laxer
    REFERENCE = "reference"  # a starting value the designer may change either way


class Confidence(enum.StrEnum):
    """The weakest basis of an indicator's meaning and unit (spec-facts.md tags)."""

    STATED = "stated"  # [S], [S-partial]
    OBSERVED = "observed"  # [O]
    RECALLED = "recalled"  # [R]
    INFERRED = "inferred"  # [I]
    GUESSED = "guessed"  # [G]


Op = Literal[">", ">=", "<", "<="]
RAISE_OPS: Final[dict[Direction, frozenset[str]]] = {
    Direction.ABOVE: frozenset({">", ">="}),
    Direction.BELOW: frozenset({"<", "<="}),
}
CLEAR_OPS: Final[dict[Direction, frozenset[str]]] = {
    Direction.ABOVE: frozenset({"<", "<="}),
    Direction.BELOW: frozenset({">", ">="}),
}


@dataclass(frozen=True, slots=True)
class UnitConversion:
    """canonical = value * factor + offset."""

    factor: float
    offset: float = 0.0

    def to_canonical(self, value: float) -> float:
        """The value in the canonical unit."""
        return value * self.factor + self.offset

    def from_canonical(self, value: float) -> float:
        """The canonical value expressed in this unit."""
        return (value - self.offset) / self.factor


@dataclass(frozen=True, slots=True)
class Domain:
    """A domain of the catalogue; `site` is False for generic ones (usable on any site)."""

    code: str
    name_zh: str
    name_en: str
    site: bool


@dataclass(frozen=True, slots=True)
class AlarmLevel:
    """One word of the wire's alarm vocabulary (`AlarmRecord.level`).

    `rank` orders severity within one `family` and `direction` (1 = least severe).
    """

    level: str
    family: str
    direction: Direction
    rank: int
    name_zh: str
    name_en: str
    source: str


@dataclass(frozen=True, slots=True)
class Escalation:
    """`count` points at `level` within one monitoring item raise the item to `to`."""

    level: str
    count: int
    to: str
    source: str


@dataclass(frozen=True, slots=True)
class Threshold:
    """A default threshold that a standard gives, with its source.

    `value` and `unit` are as the source states them; `canonical` is the same value in the
    indicator's canonical unit (its canonical rate unit for `rate` thresholds). The alarm is
    met when `canonical_value op canonical` holds; `window` (seconds) is the span a rate is
    measured over.
    """

    name: str
    level: str
    edge: Edge
    op: Op
    value: float
    unit: str
    canonical: float
    window: float | None
    binding: Binding
    source: str


@dataclass(frozen=True, slots=True)
class Indicator:
    """One indicator (指标) of the catalogue.

    `thresholds` maps each default threshold's name to its canonical value; `defaults` holds
    the same thresholds in full (level, comparison, window, binding, source).
    """

    code: str
    domain: str
    name_zh: str
    name_en: str
    unit: str
    units: dict[str, UnitConversion]
    low: float
    high: float
    alarms: tuple[str, ...]
    thresholds: dict[str, float]
    source: str
    kind: Kind = Kind.ANALOG
    confidence: Confidence = Confidence.STATED
    defaults: tuple[Threshold, ...] = ()
    rate_unit: str | None = None
    rate_units: dict[str, UnitConversion] = field(default_factory=dict)
    compare_to: str | None = None

    def to_canonical(self, value: float, unit: str) -> float:
        """Convert `value` given in `unit` to this indicator's canonical unit."""
        return self._conversion(unit).to_canonical(value)

    def from_canonical(self, value: float, unit: str) -> float:
        """Express a canonical `value` in the accepted `unit`."""
        return self._conversion(unit).from_canonical(value)

    def rate_to_canonical(self, value: float, unit: str) -> float:
        """Convert a rate given in `unit` (e.g. mm/h) to the canonical rate unit."""
        conversion = self.rate_units.get(unit)
        if conversion is None:
            raise CatalogueError(f"rate unit {unit!r} is not accepted for {self.code}")
        return conversion.to_canonical(value)

    def plausible(self, value: float) -> bool:
        """Whether `value` (canonical unit) lies in the indicator's plausible range."""
        return self.low <= value <= self.high

    def threshold(self, name: str) -> Threshold | None:
        """The default threshold called `name`, or None."""
        return next((t for t in self.defaults if t.name == name), None)

    def comparison(
        self, level: str, edge: Edge = Edge.RAISE, window: float | None = None
    ) -> Op | None:
        """The comparison of the default threshold that raises (or clears) `level`, or None.

        A rate's is the one over the same `window`. The alarms compare a site's own value for
        that threshold the same way: the standard words the comparison, the site the number.
        """
        return next(
            (t.op for t in self.defaults if (t.level, t.edge, t.window) == (level, edge, window)),
            None,
        )

    def _conversion(self, unit: str) -> UnitConversion:
        conversion = self.units.get(unit)
        if conversion is None:
            raise CatalogueError(f"unit {unit!r} is not accepted for {self.code}")
        return conversion


@dataclass(frozen=True, slots=True)
class Catalogue:
    """All indicators by code, with the domains and the alarm vocabulary they use."""

    indicators: dict[str, Indicator]
    domains: dict[str, Domain] = field(default_factory=dict)
    alarm_levels: dict[str, AlarmLevel] = field(default_factory=dict)
    escalation: tuple[Escalation, ...] = ()

    def get(self, code: str) -> Indicator | None:
        """The indicator with `code`, or None."""
        return self.indicators.get(code)

    def in_domain(self, domain: str | None) -> list[Indicator]:
        """Indicators of one domain (all when `domain` is None), sorted by code."""
        return sorted(
            (i for i in self.indicators.values() if domain is None or i.domain == domain),
            key=lambda i: i.code,
        )

    def for_site(self, domain: str) -> list[Indicator]:
        """Indicators a site of `domain` may use: its own and the generic ones, by code."""
        generic = {code for code, d in self.domains.items() if not d.site}
        return sorted(
            (i for i in self.indicators.values() if i.domain == domain or i.domain in generic),
            key=lambda i: i.code,
        )

    def vocabulary(self, family: str) -> tuple[AlarmLevel, ...]:
        """The levels of one alarm family along the value axis (LL, L, H, HH; blue .. red)."""
        return tuple(
            sorted((a for a in self.alarm_levels.values() if a.family == family), key=axis)
        )


def axis(level: AlarmLevel) -> tuple[bool, int]:
    """Where a level sits on the value axis: downward levels, most severe first, then upward."""
    upward = level.direction is Direction.ABOVE
    return (upward, level.rank if upward else -level.rank)
