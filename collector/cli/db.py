"""`collector db upgrade`: apply the numbered schema migrations before (or without) serving."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import click

from collector.cli.common import config_option, load_or_exit
from collector.storage import upgrade_storage
from collector.storage.base import StorageError


@click.group()
def db() -> None:
    """The collector's database schema."""


@db.command("upgrade")
@config_option
@click.option("--json", "as_json", is_flag=True, help='Print {"from", "to"} as JSON.')
def db_upgrade(config_path: Path, as_json: bool) -> None:
    """Bring the configured database to this collector's schema (serve does it too, at start).

    Safe to run while other collectors serve the same database: migrations take a lock, and
    a database already up to date is left as it is. A database newer than this collector is
    refused (exit 1).
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
