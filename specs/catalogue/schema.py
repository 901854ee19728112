"""The catalogue data file's schema: the shape of each entry, checked strictly.

What only the whole file can show (codes, levels, units, ranges and thresholds that must
agree with each other) is `specs.catalogue.checks`.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from specs.catalogue.model import (
    Binding,
    Confidence,
    Direction,
    Edge,
    Kind,
    Op,
)

# --- the data file's schema -------------------------------------------------------------------


def _number(value: object) -> float:
    """A finite number from YAML: an int, a float or an exact fraction written "p/q"."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")  # noqa: TRY004 - pydantic wants ValueError
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*/\s*[0-9]+\s*", value):
        numerator, denominator = value.split("/")
        if int(denominator) == 0:
            raise ValueError(f"fraction {value!r} divides by zero")
        number = float(Fraction(int(numerator), int(denominator)))
    else:
        raise ValueError(f"must be a number or a fraction such as '5/9', got {value!r}")
    if not math.isfinite(number):
        raise ValueError("must be finite")
    return number


Number = Annotated[float, BeforeValidator(_number)]
Text = Annotated[str, Field(min_length=1)]
# Enums from their text: strict mode would accept only enum instances, which YAML never gives.
KindField = Annotated[Kind, Field(strict=False)]
DirectionField = Annotated[Direction, Field(strict=False)]
EdgeField = Annotated[Edge, Field(strict=False)]
BindingField = Annotated[Binding, Field(strict=False)]
ConfidenceField = Annotated[Confidence, Field(strict=False)]


class _Model(BaseModel):
    # strict: a quoted "25" or a `yes` is a mistake in regulatory data, not something to coerce.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class UnitModel(_Model):
    """How an accepted unit converts to the canonical one: canonical = factor * value + offset."""

    factor: Number
    offset: Number = 0.0


class ThresholdModel(_Model):
    """A default alarm threshold of an indicator, as the data file writes it."""

    level: Text | None = None
    value: Number
    unit: Text | None = None
    op: Op | None = None
    edge: EdgeField = Edge.RAISE
    window: Text | None = None
    binding: BindingField
    source: Text


class IndicatorModel(_Model):
    """One indicator (`indicators:` entry), as the data file writes it."""

    code: Text
    domain: Text
    kind: KindField = Kind.ANALOG
    name_zh: Text
    name_en: Text
    unit: Text
    units: dict[str, UnitModel] = Field(min_length=1)
    range: list[Number] = Field(min_length=2, max_length=2)
    alarms: list[str] = Field(default_factory=list)
    thresholds: dict[str, ThresholdModel] = Field(default_factory=dict)
    rate_unit: Text | None = None
    rate_units: dict[str, UnitModel] = Field(default_factory=dict)
    compare_to: Text | None = None
    confidence: ConfidenceField
    source: Text


class DomainModel(_Model):
    """One domain (`domains:` entry)."""

    code: Text
    name_zh: Text
    name_en: Text
    site: bool


class AlarmLevelModel(_Model):
    """One alarm level of a vocabulary (`alarm_levels:` entry)."""

    level: Text
    family: Text
    direction: DirectionField
    rank: int = Field(ge=1)
    name_zh: Text
    name_en: Text
    source: Text


class EscalationModel(_Model):
    """One escalation step (`escalation:` entry), as `specs.catalogue.model.Escalation` says."""

    level: Text
    count: int = Field(ge=2)
    to: Text
    source: Text


class CatalogueModel(_Model):
    """The whole data file."""

    version: Literal[1]
    domains: list[DomainModel] = Field(min_length=1)
    alarm_levels: list[AlarmLevelModel] = Field(min_length=1)
    escalation: list[EscalationModel] = Field(default_factory=list)
    indicators: list[IndicatorModel] = Field(min_length=1)
