"""What every `collector` command shares: the --config option, config and storage.

The option and the loader are the host layer's (`hostkit.configfile`), as is logging.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, TypeVar

import click

from collector.config import CollectorConfig, load_collector_config
from collector.storage import open_storage
from collector.storage.base import Storage, StorageError
from hostkit import configfile
from hostkit.configfile import CONFIG_ERROR_EXIT
from specs.identifiers import IdentifierError, check_enterprise_code, check_gateway_code
from specs.records import RecordFormatError, parse_iso_time

__all__ = [
    "CONFIG_ENV",
    "CONFIG_ERROR_EXIT",
    "USAGE_ERROR_EXIT",
    "config_option",
    "load_or_exit",
    "with_storage",
]

USAGE_ERROR_EXIT: Final = 2
"""A value the command cannot act on (an unknown gateway, a bad range): click's usage code."""
CONFIG_ENV: Final = "GANZHI_COLLECTOR_CONFIG"
"""The collector config's path when `-c` is not given (a unit file's `Environment=`)."""
T = TypeVar("T")


def load_or_exit(path: Path) -> CollectorConfig:
    """Load the collector config, or print every issue to stderr and exit with status 2."""
    return configfile.load_or_exit(path, load_collector_config)


config_option = configfile.config_option("The collector config", CONFIG_ENV)
gateway_option = click.option("--gateway", "gateway_id", required=True, help="{enterprise}-GW{NN}")
"""`--gateway {enterprise}-GW{NN}`, the commands' `gateway_id`."""


def not_empty(_context: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """An option's text as given, unless empty or blank (a usage error naming the option).

    `--kid ''` would otherwise reach the storage as a key id no key has, and the command would
    report a state ("no active key to revoke") instead of the mistake.
    """
    if value is not None and not value.strip():
        raise click.BadParameter("must not be empty")
    return value


def with_storage(config: CollectorConfig, work: Callable[[Storage], Awaitable[T]]) -> T:
    """Run `work` on the configured storage; a storage error ends the command with status 1."""

    async def run() -> T:
        async with open_storage(config.storage.url) as storage:
            return await work(storage)

    try:
        return asyncio.run(run())
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None


def gateway_enterprise(gateway: str) -> str:
    """The enterprise of a `--gateway` `{enterprise}-GW{NN}`, both codes checked (else usage)."""
    enterprise = gateway.partition("-GW")[0]
    try:
        check_gateway_code(gateway, enterprise)
        check_enterprise_code(enterprise)
    except IdentifierError as exc:
        raise click.BadParameter(str(exc), param_hint="--gateway") from None
    return enterprise


def time_option(name: str, text: str) -> float:
    """The unix time of an ISO 8601 option `name` (else a usage error with an example)."""
    try:
        return parse_iso_time(text)
    except RecordFormatError as exc:
        raise click.BadParameter(
            f"{exc}; e.g. 2026-05-28T08:00:00+08:00", param_hint=name
        ) from None
