"""`collector serve`: ingest and the HTTP API in one process, until a signal."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from collector.cli.check import private_keys_or_exit, refuse_bad_broker_tls
from collector.cli.common import config_option, load_or_exit
from collector.pki.store import PkiError
from collector.runtime import serve_until_signalled
from collector.storage.base import StorageError
from hostkit.keyfiles import KeyFileError


@click.command()
@config_option
def serve(config_path: Path) -> None:
    """Run ingest and the HTTP API until SIGINT or SIGTERM."""
    config = load_or_exit(config_path)
    private_keys_or_exit(config)
    refuse_bad_broker_tls(config_path, config)
    try:
        asyncio.run(serve_until_signalled(config))
    except (KeyFileError, PkiError, StorageError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
