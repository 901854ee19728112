"""`collector keys`: the collector's own key pair."""

from __future__ import annotations

from pathlib import Path

import click

from collector.cli.common import config_option, load_or_exit
from collector.keyrotation import activate_next_key, stage_next_key
from hostkit.keyfiles import KeyFileError, create_key_pair, next_key_path, public_key_path


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
        key = create_key_pair(key_file, config.signing.algorithm)
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {key.alg} key {key_file} and {public_key_path(key_file)}", err=True)
    click.echo(key.kid)


@keys.command("rotate")
@config_option
@click.option(
    "--activate",
    is_flag=True,
    help="Make the staged key the current one (the old one is kept as .retired-<kid>).",
)
def keys_rotate(config_path: Path, activate: bool) -> None:
    """Stage a new collector key at <key_file>.next, or (--activate) switch to it.

    Between the two steps, give every gateway the new public key (<key_file>.next.pub) beside
    the old one in `uplink.collector_keys`; collectors sign with the new key from their next
    start after --activate.
    """
    config = load_or_exit(config_path)
    key_file = config.signing.key_file
    try:
        if activate:
            old, new = activate_next_key(key_file)
        else:
            staged = stage_next_key(key_file, config.signing.algorithm)
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    if activate:
        click.echo(
            f"{key_file} is now key {new.kid}; key {old.kid} is kept beside it."
            " Restart the collectors to sign with it.",
            err=True,
        )
        click.echo(new.kid)
        return
    public = public_key_path(next_key_path(key_file))
    click.echo(
        f"staged {staged.alg} key {staged.kid} at {next_key_path(key_file)}. Add {public} to"
        " every gateway's uplink.collector_keys (beside the current key), then run"
        f" `collector keys rotate --activate -c {config_path}`.",
        err=True,
    )
    click.echo(staged.kid)
