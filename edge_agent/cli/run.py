"""`edge-agent run`: poll, seal and forward until stopped."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from edge_agent.cli.options import CONFIG_ERROR_EXIT, LOG_FORMAT, config_option, load_or_exit
from edge_agent.cli.refusals import refuse_bad_collector_keys, refuse_exposed_keys
from edge_agent.shell.host import keep_large_allocations_mapped
from edge_agent.shell.keyfile import MAKE_KEY_ADVICE, key_algorithm_problem
from edge_agent.shell.site_runner import run_site
from hostkit.keyfiles import missing_key_message
from hostkit.logs import configure_logging


@click.command()
@config_option
def run(config_path: Path) -> None:
    """Run until stopped (SIGTERM/SIGINT); systemd Type=notify is supported."""
    keep_large_allocations_mapped()  # from the start: reading the map frees large buffers too
    config = load_or_exit(config_path)
    refuse_exposed_keys(config)
    configure_logging(click.get_current_context().meta.get(LOG_FORMAT, "auto"))
    gateway_key_missing = not config.signing.key_file.exists()
    if gateway_key_missing:
        key_file = config.signing.key_file
        click.echo(missing_key_message(key_file, MAKE_KEY_ADVICE), err=True)
    refuse_bad_collector_keys(config_path, config)
    if gateway_key_missing:
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT)
    problem = key_algorithm_problem(config.signing.key_file, config.signing.algorithm)
    if problem:
        click.echo(problem, err=True)
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT)
    asyncio.run(run_site(config_path, config))
