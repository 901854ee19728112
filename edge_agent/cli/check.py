"""`edge-agent check`: validate the site map and show where every point is read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from edge_agent.cli.check_report import check_json
from edge_agent.cli.options import config_option, load_or_exit
from edge_agent.cli.refusals import refuse_unusable_files
from edge_agent.core.plan_compile import bus_plans
from edge_agent.core.points import ResolvedPoint, resolve_points
from edge_agent.kinds import KINDS, PointView
from edge_agent.shell.outbox_space import reserve_shortfall
from hostkit.tables import render_table

# Every table has these columns around the ones that say where its points are read.
_HEAD = ("device", "point", "quota", "name")
_TAIL = ("scale", "offset", "unit")


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="The resolved points and RTU buses as JSON.")
def check(config_path: Path, as_json: bool) -> None:
    """Validate the site map and print the resolved point table."""
    config = load_or_exit(config_path)
    refuse_unusable_files(config_path, config)
    points = resolve_points(config)
    shortfall = reserve_shortfall(config.outbox.path, config.outbox.max_bytes)
    if shortfall is not None:  # on stderr: the table and the JSON stay as they are
        click.echo(f"warning: {shortfall}", err=True)
    if as_json:
        report = check_json(config, points, bus_plans(config, points, wire_of=os.path.realpath))
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    # One table per kind of source (Modbus registers, OPC UA nodes, line patterns), each with
    # the columns that say where its points are read.
    view_of = {device.id: KINDS.kind_of(device).view for device in config.devices}
    tables = [
        (
            (*_HEAD, *view.columns, *_TAIL),
            [_row(view, p) for p in points if view_of[p.device_id] is view],
        )
        for view in KINDS.views()
    ]
    click.echo("\n\n".join(render_table(rows, header) for header, rows in tables if rows))
    for plan in bus_plans(config, points, wire_of=os.path.realpath):
        click.echo(plan.describe())
    click.echo(
        f"{len(config.devices)} devices, {len(points)} points, gateway {config.site.gateway}"
    )


def _unit(point: ResolvedPoint) -> str:
    if point.unit == point.canonical_unit:
        return point.unit
    return f"{point.unit}->{point.canonical_unit}"


def _row(view: PointView, point: ResolvedPoint) -> tuple[str, ...]:
    return (
        point.device_id,
        point.point,
        point.quota,
        point.indicator_name,
        *view.cells(point),
        f"{point.scale:g}",
        f"{point.offset:g}",
        _unit(point),
    )
