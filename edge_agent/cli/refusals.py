"""Checks `check` and `run` share before anything starts: private keys and collector keys."""

from __future__ import annotations

from pathlib import Path

import click

from edge_agent.cli.options import CONFIG_ERROR_EXIT
from edge_agent.config import SiteConfig
from edge_agent.config.loader import problems_at
from edge_agent.shell.collector_keys import collector_key_problems
from hostkit.keyfiles import ExposedKeyError, check_private_mode, next_key_path


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
