"""`edge-agent backfill -c site.yaml --csv FILE [--tz +08:00] [--json]` (DESIGN section 6)."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Self

import click

from edge_agent.backfill.importer import (
    CsvFileError,
    CsvSource,
    ImportCounts,
    OutboxWriteError,
    exclusive_import,
    import_rows,
)
from edge_agent.backfill.rows import DEFAULT_TZ, OffsetError, RowParser, parse_offset, targets_of
from edge_agent.cli.options import CONFIG_ERROR_EXIT, config_option, load_or_exit
from edge_agent.cli.refusals import GATEWAY_KEY, outbox_path_problems
from edge_agent.config import SiteConfig
from edge_agent.core.plan_compile import identity_of
from edge_agent.core.points import resolve_points
from edge_agent.shell.host import clock_synchronized
from edge_agent.shell.keyfile import load_gateway_key
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_recovery import OutboxUnavailableError
from hostkit.configfile import exit_at_lines
from hostkit.keyfiles import KeyFileError
from specs.catalogue import default_catalogue
from specs.signing import SigningKey

if TYPE_CHECKING:
    from types import TracebackType

REJECTED_EXIT = 1
LET_GO_EXIT = 75
"""The outbox let readings go to make room for the import: run it again later (EX_TEMPFAIL)."""
INTERRUPTED_EXIT = 130
"""128 + SIGINT, as a shell reports a command Ctrl-C ended."""
_RERUN = "run the same command again to import the rest: nothing is imported twice"


def _offset(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    try:
        return parse_offset(value)
    except OffsetError as exc:
        raise click.BadParameter(str(exc)) from None


class _Report:
    """Rejected rows as `FILE:LINE: reason` on stderr; a progress bar on a terminal only."""

    def __init__(self, path: Path, size: int) -> None:
        self._path = path
        self._bar = None
        self._shown = 0
        if sys.stderr.isatty():
            self._bar = click.progressbar(
                length=size, label=f"backfill {path.name}", file=sys.stderr, show_eta=True
            )

    def __enter__(self) -> Self:
        if self._bar is not None:
            self._bar.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.__exit__(kind, error, trace)

    def rejected(self, line: int, reason: str) -> None:
        # On a terminal, clear the bar's line first so the message stands on its own.
        prefix = "\r\x1b[K" if self._bar is not None else ""
        click.echo(f"{prefix}{self._path}:{line}: {reason}", err=True)

    def conflicted(self, line: int, other: str) -> None:
        self.rejected(line, f"conflicts with {other}")

    def advanced(self, position: int) -> None:
        if self._bar is not None and position > self._shown:
            self._bar.update(position - self._shown)
            self._shown = position


def _usable_signing_key(config_path: Path, config: SiteConfig) -> SigningKey:
    """The gateway key, once it and the outbox's place are usable; else exit 2.

    Each problem is named at its line, both at once: fixing one does not only show the next.
    """
    problems = outbox_path_problems(config_path, config, try_writing=True)
    try:
        key = load_gateway_key(
            config.signing.key_file,
            config.signing.algorithm,
            config.outbox.path,
            warn=lambda stale: click.echo(f"warning: {stale}", err=True),
        )
    except KeyFileError as exc:
        exit_at_lines(config_path, [(GATEWAY_KEY, str(exc)), *problems])
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT) from None  # exit_at_lines has exited
    exit_at_lines(config_path, problems)
    return key


@contextmanager
def _ctrl_c_stops() -> Iterator[threading.Event]:
    """While inside, SIGINT sets the event the import looks at before each row.

    Instead of KeyboardInterrupt wherever the main thread is (asyncio's own handler would
    cancel the import inside a seal): the import stops between two rows and seals what it
    read. Set before `asyncio.run`, which then leaves SIGINT alone.
    """
    asked = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda _signum, _frame: asked.set())
    try:
        yield asked
    finally:
        signal.signal(signal.SIGINT, previous)


async def _import(
    config: SiteConfig,
    key: SigningKey,
    source: CsvSource,
    parser: RowParser,
    report: _Report,
    *,
    stop: threading.Event,
) -> ImportCounts:
    try:
        async with open_outbox(
            config.outbox.path,
            identity_of(config),
            key,
            max_bytes=config.outbox.max_bytes,
            clock_synced=clock_synchronized(),
        ) as outbox:
            return await import_rows(
                source,
                parser,
                outbox,
                progress=report,
                clock_synced=clock_synchronized,
                stopped=stop.is_set,
            )
    except sqlite3.Error as exc:  # opening: not an outbox file, unreadable, locked too long
        raise OutboxWriteError(f"{config.outbox.path}: {exc}", 0) from None
    except OutboxUnavailableError as exc:  # full disk, lock, I/O: it names the file itself
        raise OutboxWriteError(str(exc), 0) from None


@click.command()
@config_option
@click.option(
    "--csv",
    "csv_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The instrument log: UTF-8 CSV, header point,t,value[,quality][,unit].",
)
@click.option(
    "--tz",
    "offset",
    default=DEFAULT_TZ,
    show_default=True,
    callback=_offset,
    help="UTC offset of times written without one.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def backfill(config_path: Path, csv_path: Path, offset: int, as_json: bool) -> None:
    """Import an instrument's own log into the outbox as backfilled readings.

    Each row that cannot be imported is reported as FILE:LINE: reason on stderr and skipped.
    A (point, t) the outbox holds (sealed live by the agent, or imported by this file or an
    earlier run) is not sealed again: with the same value and quality it counts as duplicate
    (running the same file again imports nothing); with another value or quality as conflict,
    reported as FILE:LINE: conflicts with ... (the reading held, or the earlier line of the
    file), and the reading held is kept. Readings already sent and pruned by retention cannot
    be checked. Imported means sealed into the outbox: the collector may still refuse a
    reading (a month past its storage.raw_days: past_retention), which its audit says, not
    this count. Safe while `edge-agent run` runs. Exit 1 when any row was rejected or
    conflicts, or the outbox could not be written; 2 for a file or config it cannot use; 75
    when the full outbox let readings go to make room (let go N: run the same command again
    later to bring them back); 130 when Ctrl-C stopped it (the counts say how far it got).
    """
    config = load_or_exit(config_path)
    key = _usable_signing_key(config_path, config)
    targets = targets_of(resolve_points(config), default_catalogue())

    def waiting() -> None:
        click.echo(f"{config.outbox.path}: another backfill is running; waiting for it", err=True)

    try:
        source = CsvSource(csv_path)
    except CsvFileError as exc:
        click.echo(str(exc), err=True)
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT) from None
    parser = RowParser(source.columns, targets, offset)
    try:
        with (
            exclusive_import(config.outbox.path, waiting),
            _Report(csv_path, source.size) as report,
            _ctrl_c_stops() as stop,
        ):
            counts = asyncio.run(_import(config, key, source, parser, report, stop=stop))
    except KeyboardInterrupt:  # before the import began (waiting for another one)
        click.echo(f"{csv_path}: interrupted before importing anything", err=True)
        raise click.exceptions.Exit(INTERRUPTED_EXIT) from None
    except CsvFileError as exc:
        click.echo(str(exc), err=True)
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT) from None
    except OutboxWriteError as exc:
        click.echo(
            f"{exc}; {exc.imported} readings were imported before it. Run the same command"
            " again to import the rest: nothing is imported twice.",
            err=True,
        )
        raise click.exceptions.Exit(REJECTED_EXIT) from None
    finally:
        source.close()
    _show(csv_path, counts, as_json=as_json)
    if counts.interrupted_after is not None:
        click.echo(
            f"{csv_path}: interrupted after line {counts.interrupted_after}; {_RERUN}", err=True
        )
        raise click.exceptions.Exit(INTERRUPTED_EXIT)
    if counts.let_go:
        click.echo(
            f"{csv_path}: {counts.let_go} readings were let go to make room in the full outbox"
            " (thinned away or dropped, oldest first); once the collector has taken the"
            f" backlog (or outbox.max_bytes is raised), {_RERUN}",
            err=True,
        )
        raise click.exceptions.Exit(LET_GO_EXIT)
    if counts.rejected or counts.conflict:
        raise click.exceptions.Exit(REJECTED_EXIT)


def _show(csv_path: Path, counts: ImportCounts, *, as_json: bool) -> None:
    """The counts on stdout, whether the whole file was read or Ctrl-C stopped it."""
    if as_json:
        body: dict[str, object] = {
            "imported": counts.imported,
            "duplicate": counts.duplicate,
            "conflict": counts.conflict,
            "rejected": counts.rejected,
            "let_go": counts.let_go,
            "seconds": round(counts.seconds, 3),
        }
        if counts.interrupted_after is not None:
            body["interrupted"] = True
        click.echo(json.dumps(body))
    else:
        click.echo(
            f"{csv_path}: imported {counts.imported}, duplicate {counts.duplicate},"
            f" conflict {counts.conflict}, rejected {counts.rejected} in {counts.seconds:.1f} s"
        )
        if counts.let_go:
            click.echo(f"{csv_path}: let go {counts.let_go} (to make room in the full outbox)")
        if counts.imported:
            click.echo(f"{csv_path}: {IMPORTED_MEANS}")


# What `imported` counts, and what it cannot: the collector's retention is its own config
# (`storage.raw_days`), and what it refuses comes back in no ACK, only in its audit.
IMPORTED_MEANS = (
    "the imported readings are sealed into the outbox, not yet stored: the collector refuses"
    " any of a month past its storage.raw_days (audited past_retention) and stores none twice"
    " (audited duplicate)"
)
