"""What every Ganzhi command line has: `-h`, `--version`, `--log-format`, `GANZHI_` variables.

A program's top group takes `CONTEXT_SETTINGS` (its subcommands inherit `-h`) and the
`version_option`; `log_format_option` is the one `--log-format` both programs take.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
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


class LazyGroup(click.Group):
    """A group whose subcommands are imported when one is run, or listed for help.

    `lazy` maps each command's name to `"module:attribute"`. A long-running command then holds
    only its own module and what that imports, not every other command's (G7: `edge-agent run`
    would otherwise keep backfill's, probe's and status's modules resident, about 1 MB).
    """

    def __init__(self, *args: Any, lazy: Mapping[str, str], **kwargs: Any) -> None:  # noqa: ANN401 - click's own signature
        super().__init__(*args, **kwargs)
        self._lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command's name, imported or not, sorted as click lists them."""
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command `cmd_name`, imported now if it was not yet."""
        if cmd_name in self._lazy and cmd_name not in self.commands:
            module, _, attribute = self._lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self._lazy[cmd_name]} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)
