"""`collector check`: the config and the files it names, without starting anything."""

from __future__ import annotations

import json
from pathlib import Path

import click

from collector.cli.common import CONFIG_ERROR_EXIT, config_option, load_or_exit
from collector.config import CollectorConfig
from collector.keyfiles import load_key_file
from hostkit.keyfiles import KeyFileError, check_private_mode
from specs.signing import SigningKey


def private_keys_or_exit(config: CollectorConfig) -> SigningKey:
    """The collector's signing key, or exit 2 naming each private key file that is unusable.

    A private key the group or others may read is refused (with the `chmod` that fixes it):
    anyone on the machine could sign ACKs and commands, or pose as the collector at the broker.
    """
    problems: list[str] = []
    key: SigningKey | None = None
    try:
        key = load_key_file(config.signing.key_file)
    except KeyFileError as exc:
        problems.append(str(exc))
    if config.broker_tls is not None and config.broker_tls.key is not None:
        try:
            check_private_mode(config.broker_tls.key)
        except KeyFileError as exc:
            problems.append(str(exc))
    if problems or key is None:
        for problem in problems:
            click.echo(problem, err=True)
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT)
    return key


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def check(config_path: Path, as_json: bool) -> None:
    """Check the config and the collector's key files; start nothing."""
    config = load_or_exit(config_path)
    key = private_keys_or_exit(config)
    if as_json:
        signing = {"file": str(config.signing.key_file), "alg": key.alg, "kid": key.kid}
        click.echo(json.dumps({"config": str(config_path), "signing_key": signing}))
        return
    click.echo(f"config {config_path}: ok")
    click.echo(f"signing key {config.signing.key_file}: {key.alg} {key.kid}")
