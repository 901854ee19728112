"""What every `collector` command shares: logging, the --config option, config and storage."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, Literal, TypeVar

import click
import structlog

from collector.config import CollectorConfig, load_collector_config
from collector.storage import open_storage
from collector.storage.base import Storage, StorageError
from specs.yamlconf import ConfigError

CONFIG_ERROR_EXIT: Final = 2
LogFormat = Literal["auto", "json", "console"]
T = TypeVar("T")


def configure_logging(fmt: LogFormat = "auto", level: int = logging.INFO) -> None:
    """Log structlog events and stdlib records (uvicorn, paho): JSON lines, or pretty at a TTY."""
    pretty = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if pretty else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.INFO))


def load_or_exit(path: Path) -> CollectorConfig:
    """Load the collector config, or print every issue to stderr and exit with status 2."""
    try:
        return load_collector_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        count = len(exc.issues)
        click.echo(f"{path}: {count} problem{'s' * (count != 1)}; nothing started", err=True)
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT) from None


config_option = click.option(
    "-c",
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The collector config (YAML).",
)


def with_storage(config: CollectorConfig, work: Callable[[Storage], Awaitable[T]]) -> T:
    """Run `work` on the configured storage; a storage error ends the command with status 1."""

    async def run() -> T:
        async with open_storage(config.storage.url) as storage:
            return await work(storage)

    try:
        return asyncio.run(run())
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
