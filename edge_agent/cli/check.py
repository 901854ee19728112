"""`edge-agent check`: validate the site map and show where every point is read."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge_agent.cli.check_report import check_json
from edge_agent.cli.options import config_option, load_or_exit
from edge_agent.cli.refusals import refuse_bad_collector_keys, refuse_exposed_keys
from edge_agent.core.points import (
    NodeSource,
    PatternSource,
    RegisterSource,
    ResolvedPoint,
    resolve_points,
)
from edge_agent.shell.buses import plan_buses
from hostkit.tables import render_table

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
_NODE_COLUMNS = ("device", "point", "quota", "name", "node", "scale", "offset", "unit")
_PATTERN_COLUMNS = ("device", "point", "quota", "name", "pattern", "scale", "offset", "unit")


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="The resolved points and RTU buses as JSON.")
def check(config_path: Path, as_json: bool) -> None:
    """Validate the site map and print the resolved point table."""
    config = load_or_exit(config_path)
    refuse_exposed_keys(config)
    refuse_bad_collector_keys(config_path, config, missing_ok=True)
    points = resolve_points(config)
    if as_json:
        report = check_json(config, points, plan_buses(config, points))
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    # One table per kind of source, each with the columns that say where its points are read.
    tables = (
        (_COLUMNS, [_row(p) for p in points if isinstance(p.source, RegisterSource)]),
        (_NODE_COLUMNS, [_source_row(p) for p in points if isinstance(p.source, NodeSource)]),
        (
            _PATTERN_COLUMNS,
            [_source_row(p) for p in points if isinstance(p.source, PatternSource)],
        ),
    )
    click.echo("\n\n".join(render_table(rows, header) for header, rows in tables if rows))
    for plan in plan_buses(config, points):
        click.echo(plan.describe())
    click.echo(
        f"{len(config.devices)} devices, {len(points)} points, gateway {config.site.gateway}"
    )


def _unit(point: ResolvedPoint) -> str:
    if point.unit == point.canonical_unit:
        return point.unit
    return f"{point.unit}->{point.canonical_unit}"


def _source_row(point: ResolvedPoint) -> tuple[str, ...]:
    """A row of an OPC UA or serial point: its node id or pattern instead of a register."""
    source = point.source
    if isinstance(source, NodeSource):
        where = source.node
    elif isinstance(source, PatternSource):
        where = source.pattern
    else:
        raise TypeError(f"{point.point} is a Modbus point: use _row")
    return (
        point.device_id,
        point.point,
        point.quota,
        point.indicator_name,
        where,
        f"{point.scale:g}",
        f"{point.offset:g}",
        _unit(point),
    )


def _row(point: ResolvedPoint) -> tuple[str, ...]:
    start = str(point.start) if point.bit is None else f"{point.start}.{point.bit}"
    # Byte and word order mean nothing for a single bit.
    order = "-" if point.dtype == "bool" else f"{point.byte_order}/{point.word_order}"
    unit = _unit(point)
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
