"""`edge-agent`: the technician's command line.

One module per command (group); each is named in `COMMANDS` below with one line, and imported
only when it runs (or `--help` lists it): `edge-agent run` holds the agent's modules alone.
"""

from __future__ import annotations

from typing import Final

import click

from edge_agent.cli.options import LOG_FORMAT
from hostkit.commandline import CONTEXT_SETTINGS, ProgramGroup, log_format_option, version_option
from hostkit.logs import LogFormat, configure_logging, log_stream

__all__ = ["COMMANDS", "main"]

COMMANDS: Final = {
    "backfill": "edge_agent.cli.backfill:backfill",
    "catalogue": "edge_agent.cli.catalogue:catalogue",
    "check": "edge_agent.cli.check:check",
    "keys": "edge_agent.cli.keys:keys",
    "outbox": "edge_agent.cli.outbox:outbox",
    "probe": "edge_agent.cli.probe:probe",
    "run": "edge_agent.cli.run:run",
    "status": "edge_agent.cli.status:status",
}
"""Each command of `edge-agent`: its name and where it is defined."""


@click.group(cls=ProgramGroup, lazy=COMMANDS, context_settings=CONTEXT_SETTINGS)
@version_option("edge-agent")
@log_format_option
@click.pass_context
def main(ctx: click.Context, log_format: LogFormat) -> None:
    """Edge agent: polls instruments and forwards signed blocks to the collector."""
    # `run` logs most; a command that opens the outbox (backfill) may log what it found there.
    configure_logging(log_format, stream=log_stream(ctx.invoked_subcommand, service="run"))
    ctx.meta[LOG_FORMAT] = log_format  # `run` passes it on to the runner it execs
