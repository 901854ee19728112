"""`collector db upgrade | prune`: schema migrations, and retention on demand."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from pathlib import Path

import click

from collector.cli.common import CONFIG_ERROR_EXIT, config_option, load_or_exit
from collector.storage import prune_storage, upgrade_storage
from collector.storage.base import StorageError
from specs.records import iso_time


@click.group()
def db() -> None:
    """The collector's database schema."""


@db.command("upgrade")
@config_option
@click.option("--json", "as_json", is_flag=True, help='Print {"from", "to"} as JSON.')
def db_upgrade(config_path: Path, as_json: bool) -> None:
    """Bring the configured database to this collector's schema (serve does it too, at start).

    Safe to run while other collectors serve the same database: migrations take a lock, and
    a database already up to date is left as it is; except SQLite schema 17 / PostgreSQL
    migration 13 (the rollups' new key), which collectors before it cannot write to: stop
    every collector of the database first (docs/operations.md). A database newer than this
    collector is refused (exit 1).
    """
    config = load_or_exit(config_path)
    try:
        before, after = asyncio.run(upgrade_storage(config.storage.url))
    except StorageError as exc:
        click.echo(f"collector db upgrade: {exc}", err=True)
        raise click.exceptions.Exit(1) from None
    if as_json:
        click.echo(json.dumps({"from": before, "to": after}))
    elif before == after:
        click.echo(f"schema {after}: up to date")
    else:
        click.echo(f"schema {before} -> {after}: upgraded")


@db.command("prune")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print what was dropped as JSON.")
def db_prune(config_path: Path, as_json: bool) -> None:
    """Apply retention now: storage.raw_days to the readings, storage.audit_days to audit rows.

    `collector serve` does this by itself every few hours; this runs it once (from cron, or
    after changing the limits). Whole months only: a month stays until all of it expired.
    With audit_days alone only audit rows go.
    """
    config = load_or_exit(config_path)
    policy = config.storage.retention
    if not policy.prunes:
        click.echo(
            "collector db prune: neither storage.raw_days nor storage.audit_days is set:"
            " everything is kept",
            err=True,
        )
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT)
    try:
        report = asyncio.run(prune_storage(config.storage.url, policy, time.time()))
    except StorageError as exc:
        click.echo(f"collector db prune: {exc}", err=True)
        raise click.exceptions.Exit(1) from None
    if as_json:
        click.echo(json.dumps(dataclasses.asdict(report)))
        return
    click.echo(
        f"raw months dropped: {', '.join(report.raw_months_dropped) or 'none'}"
        f" ({report.readings_dropped} raw readings; their per-minute rollups stay)"
    )
    click.echo(f"rollup months dropped: {', '.join(report.rollup_months_dropped) or 'none'}")
    click.echo(
        f"blocks dropped: {report.blocks_dropped} (their readings' month gone; each epoch keeps"
        " its acked block and those above it)"
    )
    click.echo(
        f"journal events dropped: {report.feed_events_dropped}, presence intervals dropped:"
        f" {report.presence_dropped} (with their readings' month)"
    )
    click.echo(f"audit rows dropped: {report.audit_rows_dropped} (older than storage.audit_days)")
    if report.held_back_to is not None:
        click.echo(
            f"held back: ages measured from the newest reading stored"
            f" ({iso_time(report.held_back_to)}), not from the clock, which is ahead of it: the"
            " months the clock alone would let go are kept (operations.md, Retention)"
        )
