"""The indicator catalogue: what each quota code means, its canonical unit and range.

The catalogue is data (`indicators.yaml` beside this module); this module parses and checks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml


class CatalogueError(ValueError):
    """The catalogue data file breaks its own rules."""


@dataclass(frozen=True, slots=True)
class UnitConversion:
    """canonical = value * factor + offset."""

    factor: float
    offset: float = 0.0


@dataclass(frozen=True, slots=True)
class Indicator:
    """One indicator (指标) of the catalogue."""

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

    def to_canonical(self, value: float, unit: str) -> float:
        """Convert `value` given in `unit` to this indicator's canonical unit."""
        conversion = self.units.get(unit)
        if conversion is None:
            raise CatalogueError(f"unit {unit!r} is not accepted for {self.code}")
        return value * conversion.factor + conversion.offset

    def plausible(self, value: float) -> bool:
        """Whether `value` (canonical unit) lies in the indicator's plausible range."""
        return self.low <= value <= self.high


@dataclass(frozen=True, slots=True)
class Catalogue:
    """All indicators by code."""

    indicators: dict[str, Indicator]

    def get(self, code: str) -> Indicator | None:
        """The indicator with `code`, or None."""
        return self.indicators.get(code)

    def in_domain(self, domain: str | None) -> list[Indicator]:
        """Indicators of one domain (all when `domain` is None), sorted by code."""
        return sorted(
            (i for i in self.indicators.values() if domain is None or i.domain == domain),
            key=lambda i: i.code,
        )


def parse_catalogue(data: Any) -> Catalogue:  # noqa: ANN401 - untyped YAML tree in
    """Build a checked catalogue from the parsed YAML tree."""
    indicators: dict[str, Indicator] = {}
    for entry in data["indicators"]:
        code = str(entry["code"])
        if code in indicators:
            raise CatalogueError(f"indicator {code} is listed twice")
        units = {
            str(name): UnitConversion(float(u["factor"]), float(u.get("offset", 0.0)))
            for name, u in entry["units"].items()
        }
        if entry["unit"] not in units:
            raise CatalogueError(f"{code}: canonical unit {entry['unit']!r} not in its units")
        low, high = (float(v) for v in entry["range"])
        if low >= high:
            raise CatalogueError(f"{code}: range low {low} is not below high {high}")
        indicators[code] = Indicator(
            code=code,
            domain=str(entry["domain"]),
            name_zh=str(entry["name_zh"]),
            name_en=str(entry["name_en"]),
            unit=str(entry["unit"]),
            units=units,
            low=low,
            high=high,
            alarms=tuple(str(a) for a in entry.get("alarms", [])),
            thresholds={str(k): float(v) for k, v in entry.get("thresholds", {}).items()},
            source=str(entry["source"]),
        )
    return Catalogue(indicators)


@cache
def default_catalogue() -> Catalogue:
    """The catalogue shipped with this package (parsed once per process)."""
    text = resources.files(__package__).joinpath("indicators.yaml").read_text(encoding="utf-8")
    return parse_catalogue(yaml.safe_load(text))
