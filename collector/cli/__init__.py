"""`collector`: keys, gateway registry, `serve` (ingest + HTTP API in one loop), and `export`.

One module per command (group); each is named in `COMMANDS` below with one line, and imported
only when it runs (or `--help` lists it): `collector gateways list` loads no web server, and
the tests that run such commands as subprocesses do not wait for fastapi and uvicorn to load.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any, Final

import click

from hostkit.commandline import CONTEXT_SETTINGS, LazyGroup, log_format_option, version_option
from hostkit.logs import LogFormat, configure_logging

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

READER_GONE_EXIT: Final = 128 + signal.SIGPIPE
"""141: what a shell reports for `seq 100000 | head -1`, whose writer SIGPIPE ended."""


class _CollectorGroup(LazyGroup):
    """The `collector` group: a command whose stdout reader went away stops quietly.

    `collector export ... | head -1` closes the pipe while the command writes. Unix tools die
    of SIGPIPE there (the shell shows 141, a pipeline under `pipefail` fails: the output is
    incomplete), without a message. Python ignores SIGPIPE (a closed socket in `serve` must
    not kill the process), so the write raises BrokenPipeError; it ends the command here, for
    every command, with that status and nothing on stderr. Not 0: whoever reads the status
    must not take a cut-off export for a complete one.
    """

    def invoke(self, ctx: click.Context) -> Any:  # noqa: ANN401 - click's own signature
        """Run the subcommand; a broken stdout pipe ends it with `READER_GONE_EXIT`."""
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _discard_stdout()
            ctx.exit(READER_GONE_EXIT)


def _discard_stdout() -> None:
    """Point stdout at /dev/null, where the interpreter's last flush goes.

    Flushing what is still buffered for the closed pipe would fail again and print
    "Exception ignored ... BrokenPipeError" at exit.
    """
    try:
        stdout_fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a file (an in-process runner's): nothing to flush
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stdout_fd)
    os.close(devnull)


@click.group(cls=_CollectorGroup, lazy=COMMANDS, context_settings=CONTEXT_SETTINGS)
@version_option("collector")
@log_format_option
@click.option("--debug", is_flag=True, help="Log every stored block and published ACK.")
def main(log_format: LogFormat, debug: bool) -> None:
    """Province collector: verifies, stores and serves what the edge agents send."""
    configure_logging(log_format, logging.DEBUG if debug else logging.INFO)
