"""What every `edge-agent` command that reads the site map shares: the option and the loader."""

from __future__ import annotations

from pathlib import Path

import click

from edge_agent.config import SiteConfig, load_site_config
from specs.yamlconf import ConfigError

CONFIG_ERROR_EXIT = 2
"""Exit status when the config file is unusable (click uses 2 for usage errors too)."""

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The site map (YAML).",
)


def load_or_exit(path: Path) -> SiteConfig:
    """Load the site map, or print every issue to stderr and exit with status 2."""
    try:
        return load_site_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        count = len(exc.issues)
        click.echo(f"{path}: {count} problem{'s' * (count != 1)}; nothing started", err=True)
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT) from None
