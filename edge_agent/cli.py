"""`edge-agent`: the technician's command line (DESIGN section 6)."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

import click

from edge_agent.config import SiteConfig, load_site_config
from edge_agent.core.points import ResolvedPoint, resolve_points
from specs.yamlconf import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

CONFIG_ERROR_EXIT = 2
"""Exit status when the config file is unusable (click uses 2 for usage errors too)."""

_COLUMNS = (
    "device",
    "point",
    "quota",
    "name",
    "table",
    "start",
    "type",
    "order",
    "scale",
    "offset",
    "unit",
)

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The site map (YAML).",
)


@click.group()
def main() -> None:
    """Edge agent: polls instruments and forwards signed blocks to the collector."""


@main.command()
@config_option
def check(config_path: Path) -> None:
    """Validate the site map and print the resolved point table."""
    config = load_or_exit(config_path)
    points = resolve_points(config)
    click.echo(render_table([_row(point) for point in points]))
    click.echo(
        f"{len(config.devices)} devices, {len(points)} points, gateway {config.site.gateway}"
    )


def load_or_exit(path: Path) -> SiteConfig:
    """Load the site map, or print every issue to stderr and exit with status 2."""
    try:
        return load_site_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        count = len(exc.issues)
        click.echo(f"{path}: {count} problem{'s' * (count != 1)}; nothing started", err=True)
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT) from None


def _row(point: ResolvedPoint) -> tuple[str, ...]:
    start = str(point.start) if point.bit is None else f"{point.start}.{point.bit}"
    # Byte and word order mean nothing for a single bit.
    order = "-" if point.dtype == "bool" else f"{point.byte_order}/{point.word_order}"
    unit = (
        point.unit
        if point.unit == point.canonical_unit
        else f"{point.unit}->{point.canonical_unit}"
    )
    return (
        point.device_id,
        point.point,
        point.quota,
        point.indicator_name,
        point.table,
        start,
        point.dtype,
        order,
        f"{point.scale:g}",
        f"{point.offset:g}",
        unit,
    )


def render_table(rows: Sequence[tuple[str, ...]], header: Sequence[str] = _COLUMNS) -> str:
    """Lay rows out in aligned columns, counting CJK characters as two cells wide."""
    table = [tuple(header), *rows]
    widths = [max(_cells(row[column]) for row in table) for column in range(len(header))]
    lines = [
        "  ".join(_pad(cell, width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    return "\n".join(lines)


def _cells(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _cells(text))
