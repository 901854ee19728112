"""What every Ganzhi command line has: `-h`, `--version`, `--log-format`, `GANZHI_` variables.

A program's top group is a `ProgramGroup` and takes `CONTEXT_SETTINGS` (its subcommands inherit
`-h`) and the `version_option`; `log_format_option` is the one `--log-format` both programs take.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
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


READER_GONE_EXIT: Final = 128 + signal.SIGPIPE
"""141: what a shell reports for `seq 100000 | head -1`, whose writer SIGPIPE ended."""


class ProgramGroup(LazyGroup):
    """A program's top group: lazy subcommands; a command whose stdout reader left stops quietly.

    `collector export ... | head -1` or `edge-agent check --json | head` closes the pipe while
    the command writes. Unix tools die of SIGPIPE there (the shell shows 141, a pipeline under
    `pipefail` fails: the output is incomplete), without a message. Python ignores SIGPIPE (a
    closed socket in `serve` or `run` must not kill the process), so the write raises
    BrokenPipeError; it ends the command here, for every command, with that status and nothing
    on stderr. Not 0: whoever reads the status must not take a cut-off export for a complete one.
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
