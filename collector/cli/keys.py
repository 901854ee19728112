"""`collector keys`: the collector's own key pair."""

from __future__ import annotations

from pathlib import Path

import click

from collector.cli.common import config_option, load_or_exit
from collector.keyfiles import KeyFileError, create_key_files, public_key_path


@click.group()
def keys() -> None:
    """The collector's own key pair (it signs ACKs and commands)."""


@keys.command("init")
@config_option
def keys_init(config_path: Path) -> None:
    """Create the key at signing.key_file (0600) and its public key at <key_file>.pub."""
    config = load_or_exit(config_path)
    key_file = config.signing.key_file
    try:
        key = create_key_files(key_file, config.signing.algorithm)
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {key.alg} key {key_file} and {public_key_path(key_file)}", err=True)
    click.echo(key.kid)
