"""What every Ganzhi command line has: `-h`, `--version`, `--log-format`, `GANZHI_` variables.

A program's top group takes `CONTEXT_SETTINGS` (its subcommands inherit `-h`) and the
`version_option`; `log_format_option` is the one `--log-format` both programs take.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

import click

from hostkit.logs import LOG_FORMATS

PACKAGE: Final = "ganzhi"
LOG_FORMAT_ENV: Final = "GANZHI_LOG_FORMAT"

CONTEXT_SETTINGS: Final[dict[str, Any]] = {"help_option_names": ["-h", "--help"]}
"""For a program's top group: `-h` as well as `--help`, on it and every subcommand."""

FC = TypeVar("FC", bound=Callable[..., object])


def version_option(program: str) -> Callable[[FC], FC]:
    """`--version`: the program's name and the installed ganzhi version."""
    return click.version_option(package_name=PACKAGE, prog_name=program)


log_format_option = click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="auto",
    show_default=True,
    envvar=LOG_FORMAT_ENV,
    show_envvar=True,
    help="auto: pretty at a terminal, JSON lines otherwise.",
)
