"""`collector`: keys, gateway registry, `serve` (ingest + HTTP API in one loop), and `export`.

One module per command (group); each is added to `main` below with one line.
"""

from __future__ import annotations

import logging

import click

from collector.cli import (
    audit,
    broker_config,
    certs,
    check,
    db,
    export,
    gateways,
    keys,
    serve,
    sites,
    tokens,
    verify,
)
from hostkit.commandline import CONTEXT_SETTINGS, log_format_option, version_option
from hostkit.logs import LogFormat, configure_logging


@click.group(context_settings=CONTEXT_SETTINGS)
@version_option("collector")
@log_format_option
@click.option("--debug", is_flag=True, help="Log every stored block and published ACK.")
def main(log_format: LogFormat, debug: bool) -> None:
    """Province collector: verifies, stores and serves what the edge agents send."""
    configure_logging(log_format, logging.DEBUG if debug else logging.INFO)


main.add_command(keys.keys)
main.add_command(serve.serve)
main.add_command(check.check)
main.add_command(gateways.gateways)
main.add_command(export.export)
main.add_command(verify.verify)
main.add_command(db.db)
main.add_command(certs.certs)
main.add_command(broker_config.broker_config)
main.add_command(audit.audit)
main.add_command(tokens.tokens)
main.add_command(sites.sites)
