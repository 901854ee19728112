"""`collector check`: the config and the files it names, without starting anything."""

from __future__ import annotations

import json
from pathlib import Path

import click

from collector.cli.common import CONFIG_ERROR_EXIT, config_option, load_or_exit
from collector.config import CollectorConfig
from collector.keyfiles import load_key_file
from hostkit.configfile import exit_at_lines
from hostkit.keyfiles import KeyFileError, check_private_mode
from hostkit.tls import tls_file_problems
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


def refuse_bad_broker_tls(
    config_path: Path, config: CollectorConfig, *, missing_ok: bool = False
) -> None:
    """Exit 2 (file:line: broker_tls.<key>: ...) when the broker's TLS files cannot be loaded.

    They are loaded as ingest will load them, so a CA that is no certificate or a key that
    does not match its certificate stops the collector here, not after its database is open.
    `missing_ok`: files not there yet are no problem (`check` before `broker-config` ran).
    """
    if config.broker.tls:
        problems = tls_file_problems(config.broker_tls, ("broker_tls",), missing_ok=missing_ok)
        exit_at_lines(config_path, problems)


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def check(config_path: Path, as_json: bool) -> None:
    """Check the config and the collector's key files; start nothing."""
    config = load_or_exit(config_path)
    key = private_keys_or_exit(config)
    refuse_bad_broker_tls(config_path, config, missing_ok=True)
    if as_json:
        signing = {"file": str(config.signing.key_file), "alg": key.alg, "kid": key.kid}
        click.echo(json.dumps({"config": str(config_path), "signing_key": signing}))
        return
    click.echo(f"config {config_path}: ok")
    click.echo(f"signing key {config.signing.key_file}: {key.alg} {key.kid}")
