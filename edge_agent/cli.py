"""`edge-agent`: the technician's command line (DESIGN section 6)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from edge_agent.backfill.cli import backfill
from edge_agent.catalogue_cli import catalogue
from edge_agent.check_report import check_json
from edge_agent.cli_config import CONFIG_ERROR_EXIT, config_option, load_or_exit
from edge_agent.config import SiteConfig
from edge_agent.config.loader import problems_at
from edge_agent.core.points import (
    NodeSource,
    PatternSource,
    RegisterSource,
    ResolvedPoint,
    resolve_points,
)
from edge_agent.outbox_cli import outbox
from edge_agent.probe_cli import probe
from edge_agent.rotate_cli import rotate
from edge_agent.shell.buses import plan_buses
from edge_agent.shell.collector_keys import collector_key_problems
from edge_agent.shell.keyfile import (
    ExposedKeyError,
    KeyExistsError,
    check_private_mode,
    create_key_pair,
    key_algorithm_problem,
)
from edge_agent.shell.rotation import next_key_path
from edge_agent.shell.site_runner import run_site
from edge_agent.status_cli import status
from hostkit.commandline import CONTEXT_SETTINGS, log_format_option, version_option
from hostkit.logs import LogFormat, configure_logging
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


_LOG_FORMAT = "log_format"  # where `main` leaves --log-format for `run` (click context meta)


@click.group(context_settings=CONTEXT_SETTINGS)
@version_option("edge-agent")
@log_format_option
@click.pass_context
def main(ctx: click.Context, log_format: LogFormat) -> None:
    """Edge agent: polls instruments and forwards signed blocks to the collector."""
    # Only `run` logs; the other commands print for a person or a script.
    ctx.meta[_LOG_FORMAT] = log_format


@main.command()
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


@main.command()
@config_option
def run(config_path: Path) -> None:
    """Run until stopped (SIGTERM/SIGINT); systemd Type=notify is supported."""
    config = load_or_exit(config_path)
    refuse_exposed_keys(config)
    configure_logging(click.get_current_context().meta.get(_LOG_FORMAT, "auto"))
    gateway_key_missing = not config.signing.key_file.exists()
    if gateway_key_missing:
        key_file = config.signing.key_file
        click.echo(f"{key_file}: key file is missing (see `edge-agent keys init`)", err=True)
    refuse_bad_collector_keys(config_path, config)
    if gateway_key_missing:
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT)
    problem = key_algorithm_problem(config.signing.key_file, config.signing.algorithm)
    if problem:
        click.echo(problem, err=True)
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT)
    asyncio.run(run_site(config_path, config))


def refuse_exposed_keys(config: SiteConfig) -> None:
    """Exit 2 naming every private key file the group or others may read (and the fix)."""
    private = [config.signing.key_file, next_key_path(config.signing.key_file)]
    if config.uplink.tls is not None and config.uplink.tls.key is not None:
        private.append(config.uplink.tls.key)
    exposed = []
    for path in private:
        try:
            check_private_mode(path)
        except ExposedKeyError as exc:
            exposed.append(str(exc))
    if exposed:
        for problem in exposed:
            click.echo(problem, err=True)
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT)


def refuse_bad_collector_keys(
    config_path: Path, config: SiteConfig, *, missing_ok: bool = False
) -> None:
    """Exit 2 naming (file:line: key: ...) each collector public key that cannot be used."""
    problems = collector_key_problems(config, missing_ok=missing_ok)
    if problems:
        for issue in problems_at(config_path, problems).issues:
            click.echo(str(issue), err=True)
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT)


@main.group()
def keys() -> None:
    """The gateway's signing key."""


@keys.command("init")
@config_option
def keys_init(config_path: Path) -> None:
    """Create the gateway key pair (private 0600); public key at <key_file>.pub."""
    config = load_or_exit(config_path)
    try:
        key = create_key_pair(config.signing.key_file, config.signing.algorithm)
    except KeyExistsError as exc:
        click.echo(str(exc), err=True)
        raise click.exceptions.Exit(1) from None
    click.echo(
        f"gateway {config.site.gateway}: {key.alg} key {key.kid} at {config.signing.key_file}"
    )
    click.echo(f"public key: {config.signing.key_file}.pub (register it at the collector)")


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


main.add_command(backfill)
main.add_command(catalogue)
main.add_command(outbox)
main.add_command(probe)
main.add_command(status)
keys.add_command(rotate)
