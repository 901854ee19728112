"""`edge-agent keys`: make the gateway's signing key, and rotate it (`keys rotate`)."""

from __future__ import annotations

from pathlib import Path

import click

from edge_agent.cli.options import config_option, load_or_exit
from edge_agent.cli.rotate import rotate
from hostkit.keyfiles import KeyFileError, create_key_pair


@click.group()
def keys() -> None:
    """The gateway's signing key."""


@keys.command("init")
@config_option
def keys_init(config_path: Path) -> None:
    """Create the gateway key pair (private 0600); public key at <key_file>.pub."""
    config = load_or_exit(config_path)
    try:
        key = create_key_pair(config.signing.key_file, config.signing.algorithm)
    except KeyFileError as exc:  # one there already, or it cannot be written
        click.echo(str(exc), err=True)
        raise click.exceptions.Exit(1) from None
    click.echo(
        f"gateway {config.site.gateway}: {key.alg} key {key.kid} at {config.signing.key_file}"
    )
    click.echo(f"public key: {config.signing.key_file}.pub (register it at the collector)")


keys.add_command(rotate)
