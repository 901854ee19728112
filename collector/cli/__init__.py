"""`collector`: keys, gateway registry, `serve` (ingest + HTTP API in one loop), and `export`.

One module per command (group); each is named in `COMMANDS` below with one line, and imported
only when it runs (or `--help` lists it): `collector gateways list` loads no web server, and
the tests that run such commands as subprocesses do not wait for fastapi and uvicorn to load.
"""

from __future__ import annotations

import logging
from typing import Final

import click

from hostkit.commandline import CONTEXT_SETTINGS, ProgramGroup, log_format_option, version_option
from hostkit.logs import LogFormat, configure_logging, log_stream

__all__ = ["COMMANDS", "main"]

COMMANDS: Final = {
    "audit": "collector.cli.audit:audit",
    "broker-config": "collector.cli.broker_config:broker_config",
    "certs": "collector.cli.certs:certs",
    "check": "collector.cli.check:check",
    "db": "collector.cli.db:db",
    "export": "collector.cli.export:export",
    "gateways": "collector.cli.gateways:gateways",
    "keys": "collector.cli.keys:keys",
    "serve": "collector.cli.serve:serve",
    "sites": "collector.cli.sites:sites",
    "tokens": "collector.cli.tokens:tokens",
    "verify": "collector.cli.verify:verify",
}
"""Each command of `collector`: its name and where it is defined."""


@click.group(cls=ProgramGroup, lazy=COMMANDS, context_settings=CONTEXT_SETTINGS)
@version_option("collector")
@log_format_option
@click.option("--debug", is_flag=True, help="Log every stored block and published ACK.")
@click.pass_context
def main(ctx: click.Context, log_format: LogFormat, debug: bool) -> None:
    """Province collector: verifies, stores and serves what the edge agents send."""
    level = logging.DEBUG if debug else logging.INFO
    stream = log_stream(ctx.invoked_subcommand, service="serve")
    configure_logging(log_format, level, stream=stream)
