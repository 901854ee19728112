"""`collector serve`: ingest and the HTTP API in one process, until a signal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from collector.api.server import listening_socket
from collector.cli.check import private_keys_or_exit, refuse_bad_broker_tls
from collector.cli.common import config_option, load_or_exit
from collector.config import CollectorConfig
from collector.pki.store import PkiError
from collector.runtime import serve_until_signalled
from collector.storage.base import StorageError
from hostkit.configfile import exit_at_lines
from hostkit.keyfiles import KeyFileError
from hostkit.listen_failure import listen_failure_exit


def refuse_unusable_api_listen(config_path: Path, config: CollectorConfig) -> None:
    """Exit (file:line: api.listen: ...) when the API cannot listen on its address now.

    With 1 when the failure may clear by itself (a port held, an address not assigned yet), so
    systemd starts the collector again; with 2 when it is a mistake in the config.

    The address is bound as the API binds it and let go at once, so a port another program
    holds, or an address of another host, stops `serve` before its database is opened.
    """
    listen = config.api.listen
    try:
        listening_socket(listen.host, listen.port).close()
    except OSError as exc:  # socket.gaierror too: a name that does not resolve
        problem = f"cannot listen on {listen}: {exc.strerror or exc}"
        status = listen_failure_exit(exc)
        exit_at_lines(config_path, [(("api", "listen"), problem)], status=status)


@click.command()
@config_option
def serve(config_path: Path) -> None:
    """Run ingest and the HTTP API until SIGINT or SIGTERM."""
    config = load_or_exit(config_path)
    private_keys_or_exit(config)
    refuse_bad_broker_tls(config_path, config)
    refuse_unusable_api_listen(config_path, config)
    try:
        asyncio.run(serve_until_signalled(config))
    except (KeyFileError, PkiError, StorageError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
