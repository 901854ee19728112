"""`edge-agent`: the technician's command line.

One module per command (group); each is added to `main` below with one line.
"""

from __future__ import annotations

import click

from edge_agent.cli.backfill import backfill
from edge_agent.cli.catalogue import catalogue
from edge_agent.cli.check import check
from edge_agent.cli.keys import keys
from edge_agent.cli.options import LOG_FORMAT
from edge_agent.cli.outbox import outbox
from edge_agent.cli.probe import probe
from edge_agent.cli.run import run
from edge_agent.cli.status import status
from hostkit.commandline import CONTEXT_SETTINGS, log_format_option, version_option
from hostkit.logs import LogFormat

__all__ = ["main"]


@click.group(context_settings=CONTEXT_SETTINGS)
@version_option("edge-agent")
@log_format_option
@click.pass_context
def main(ctx: click.Context, log_format: LogFormat) -> None:
    """Edge agent: polls instruments and forwards signed blocks to the collector."""
    # Only `run` logs; the other commands print for a person or a script.
    ctx.meta[LOG_FORMAT] = log_format


main.add_command(backfill)
main.add_command(catalogue)
main.add_command(check)
main.add_command(keys)
main.add_command(outbox)
main.add_command(probe)
main.add_command(run)
main.add_command(status)
