"""The `-c/--config` option, loading a config file or exiting 2, and later refusals at a line."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, TypeVar

import click

from configkit.issues import ConfigError, KeyPath
from configkit.validation import problems_at

CONFIG_ERROR_EXIT: Final = 2
"""Exit status when the config file is unusable (click uses 2 for usage errors too)."""

T = TypeVar("T")
FC = TypeVar("FC", bound=Callable[..., object])


def config_option(what: str, envvar: str) -> Callable[[FC], FC]:
    """`-c/--config FILE` (parameter `config_path`), taken from `envvar` when not given."""
    return click.option(
        "-c",
        "--config",
        "config_path",
        required=True,
        envvar=envvar,
        show_envvar=True,
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"{what} (YAML).",
    )


def load_or_exit(path: Path, load: Callable[[Path], T]) -> T:
    """`load(path)`, or print every issue (file:line: key: ...) to stderr and exit with 2."""
    try:
        return load(path)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        count = len(exc.issues)
        click.echo(f"{path}: {count} problem{'s' * (count != 1)}; nothing started", err=True)
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT) from None


def exit_at_lines(
    path: Path, problems: Sequence[tuple[KeyPath, str]], *, status: int = CONFIG_ERROR_EXIT
) -> None:
    """Print each problem found after loading at its key's line in `path`, then exit `status`.

    For what the config's own checks cannot see (a file it names that will not load, an
    address taken): `file:line: key: message`, like a config error. Nothing without problems.
    """
    if not problems:
        return
    echo_at_lines(path, problems)
    raise click.exceptions.Exit(status)


def echo_at_lines(path: Path, problems: Sequence[tuple[KeyPath, str]]) -> None:
    """Print each problem at its key's line in `path` (as `exit_at_lines`), and go on.

    For a refusal that waits until the other checks have named their problems too.
    """
    for issue in problems_at(path, problems).issues:
        click.echo(str(issue), err=True)
