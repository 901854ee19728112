"""`edge-agent catalogue`: the indicator catalogue, for people writing device maps."""

from __future__ import annotations

import json

import click

from hostkit.tables import render_table
from specs.catalogue import Catalogue, Indicator, Threshold, UnitConversion, default_catalogue

USAGE_EXIT = 2
"""Exit status for an unknown domain, as click uses for every usage error."""

_COLUMNS = ("code", "name_zh", "name_en", "unit", "range", "alarms", "default thresholds")


@click.command("catalogue")
@click.option("--domain", metavar="D", help="Only this domain (WHP, WKK, YHBZ, MK, BP, GAS).")
@click.option("--json", "as_json", is_flag=True, help="Every field, as a JSON array.")
def catalogue(domain: str | None, as_json: bool) -> None:
    """List the indicators (指标) a device map's `quota` may name, with units and alarms."""
    data = default_catalogue()
    if domain is not None:
        domain = _known_domain(data, domain)
    indicators = data.in_domain(domain)
    if as_json:
        click.echo(
            json.dumps([indicator_json(i) for i in indicators], ensure_ascii=False, indent=2)
        )
        return
    click.echo(render_table([_row(i) for i in indicators], _COLUMNS))
    if domain is not None and not data.domains[domain].site:
        click.echo(f"({domain} indicators may be used on a site of any domain)")


def _known_domain(data: Catalogue, domain: str) -> str:
    """The domain code as the catalogue spells it; exit 2 listing the domains when unknown."""
    found = next((code for code in data.domains if code.casefold() == domain.casefold()), None)
    if found is None:
        listed = ", ".join(f"{d.code} ({d.name_zh})" for d in data.domains.values())
        click.echo(f"unknown domain {domain!r}; the domains are: {listed}", err=True)
        raise click.exceptions.Exit(USAGE_EXIT)
    return found


def indicator_json(indicator: Indicator) -> dict[str, object]:
    """Every field of an indicator as JSON-ready data."""
    return {
        "code": indicator.code,
        "domain": indicator.domain,
        "kind": indicator.kind.value,
        "name_zh": indicator.name_zh,
        "name_en": indicator.name_en,
        "unit": indicator.unit,
        "units": _units_json(indicator.units),
        "range": [indicator.low, indicator.high],
        "alarms": list(indicator.alarms),
        "thresholds": [_threshold_json(t) for t in indicator.defaults],
        "rate_unit": indicator.rate_unit,
        "rate_units": _units_json(indicator.rate_units),
        "compare_to": indicator.compare_to,
        "confidence": indicator.confidence.value,
        "source": indicator.source,
    }


def _units_json(units: dict[str, UnitConversion]) -> dict[str, dict[str, float]]:
    return {name: {"factor": c.factor, "offset": c.offset} for name, c in units.items()}


def _threshold_json(threshold: Threshold) -> dict[str, object]:
    return {
        "name": threshold.name,
        "level": threshold.level,
        "edge": threshold.edge.value,
        "op": threshold.op,
        "value": threshold.value,
        "unit": threshold.unit,
        "canonical": threshold.canonical,
        "window_s": threshold.window,
        "binding": threshold.binding.value,
        "source": threshold.source,
    }


def _row(indicator: Indicator) -> tuple[str, ...]:
    return (
        indicator.code,
        indicator.name_zh,
        indicator.name_en,
        indicator.unit,
        f"{indicator.low:g}..{indicator.high:g}",
        ",".join(indicator.alarms) or "-",
        ", ".join(_threshold_text(t) for t in indicator.defaults) or "-",
    )


def _threshold_text(threshold: Threshold) -> str:
    """`alarm >=1 %CH4`, `rate_1h >=5 mm/h`: the standard's own number, unit and comparison."""
    return f"{threshold.name} {threshold.op}{threshold.value:g} {threshold.unit}"
