"""`collector export`: a gateway's stored readings as CSV, or a coal gateway's as MT/T 1201 text.

CSV has the columns and cells of `GET /v1/readings` with `Accept: text/csv`
(`collector.api.csv_rows`), so a file exported on the collector host equals what the API
streams for the same gateway and window. Both formats read storage a page at a time.
"""

from __future__ import annotations

import contextlib
import stat
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import BinaryIO, Final, Protocol

import click

from collector.api.core import OffsetError, offset_text, parse_utc_offset
from collector.api.csv_rows import READING_COLUMNS, csv_text, reading_cells
from collector.cli.common import (
    USAGE_ERROR_EXIT,
    config_option,
    load_or_exit,
    time_option,
    with_storage,
)
from collector.config import CollectorConfig
from collector.export.aqss import (
    BATCH_END,
    CoalReading,
    PointSeen,
    aqmc_batch,
    aqss_record,
    header,
    nonconforming_points,
    note_points,
)
from collector.readmodel import EVERYTHING, ReadingFilter, SourcedReading, pages
from collector.storage.base import Storage
from hostkit.atomicfile import replacing
from specs.catalogue import default_catalogue

EXPORT_PAGE: Final = 5000
COAL_DOMAIN: Final = "MK"


class ExportRefusedError(Exception):
    """The export cannot be made for this gateway (unknown, no blocks, not a coal mine)."""


def _coal(row: SourcedReading) -> CoalReading | None:
    if row.domain != COAL_DOMAIN or row.mine_code is None:
        return None  # a block sent before the gateway became a coal mine's
    return CoalReading(row.mine_code, row.reading)


@dataclass(frozen=True, slots=True)
class _ExportSummary:
    points: tuple[PointSeen, ...]
    readings: int


async def _coal_pages(
    storage: Storage, where: ReadingFilter, *, up_to_row: int | None = None
) -> AsyncIterator[tuple[list[CoalReading], int]]:
    """Pages of coal readings (rows after `up_to_row` left out) with the page's last row id."""
    async for page in pages(
        lambda after: storage.sourced_readings(where, after=after, limit=EXPORT_PAGE),
        lambda row: row.reading.position,
    ):
        rows = [r for r in page.items if up_to_row is None or r.reading.rowid <= up_to_row]
        yield (
            [coal for row in rows if (coal := _coal(row)) is not None],
            max((r.reading.rowid for r in page.items), default=0),
        )


async def _export_aqss(
    storage: Storage, gateway: str, t_from: float, t_to: float, write: Callable[[str], object]
) -> _ExportSummary:
    """Write AQMC then AQSS for one coal gateway; two passes, so memory stays one page."""
    profile = await storage.gateway_profile(gateway)
    if profile is None:
        registered = await storage.find_gateways([gateway])
        reason = "has sent no blocks yet" if gateway in registered else "is not registered"
        raise ExportRefusedError(f"gateway {gateway} {reason}")
    if profile.domain != COAL_DOMAIN:
        raise ExportRefusedError(
            f"gateway {gateway} is not a coal mine (domain {profile.domain}); the AQSS export"
            f" covers coal mines (domain {COAL_DOMAIN}) only"
        )
    infos = await storage.point_metas(gateway)
    where = ReadingFilter(gateway=gateway, t_from=t_from, t_to=t_to)
    seen: dict[tuple[str, str], PointSeen] = {}
    last_row = 0
    async for readings, page_last in _coal_pages(storage, where):
        seen = note_points(seen, readings)
        last_row = max(last_row, page_last)
    write(aqmc_batch(seen, infos, default_catalogue()) + "\n")
    write(header("AQSS"))
    count = 0
    # Backlog stored between the passes is left for the next export: every AQSS record must
    # have its AQMC definition above it.
    async for readings, _ in _coal_pages(storage, where, up_to_row=last_row):
        write("".join(aqss_record(r) for r in readings))
        count += len(readings)
    write(BATCH_END + "\n")
    return _ExportSummary(tuple(seen.values()), count)


class _Progress(Protocol):
    def update(self, n_steps: int) -> None: ...


class _Unseen:
    """No progress bar (stderr is not a terminal)."""

    def update(self, n_steps: int) -> None:
        """Show nothing."""


async def _export_csv(
    storage: Storage,
    gateway: str,
    window: tuple[float, float],
    zone: timezone,
    *,
    write: Callable[[str], object],
    progress: _Progress,
) -> int:
    """Write a gateway's readings in [from, to) as CSV, a storage page at a time; the count."""
    if not await storage.find_gateways([gateway]):
        raise ExportRefusedError(f"gateway {gateway} is not registered")
    where = ReadingFilter(gateway=gateway, t_from=window[0], t_to=window[1])
    write(csv_text([READING_COLUMNS]))
    count = 0
    async for page in pages(
        # An operator command: every district (no token scope).
        lambda after: storage.readings(EVERYTHING, where, after=after, limit=EXPORT_PAGE),
        lambda row: row.position,
    ):
        write(csv_text(reading_cells(row, zone) for row in page.items))
        count += len(page.items)
        progress.update(len(page.items))
    return count


def _zone_option(text: str | None, default: timezone) -> timezone:
    if text is None:
        return default
    try:
        return parse_utc_offset(text)
    except OffsetError as exc:
        raise click.BadParameter(str(exc), param_hint="--tz") from None


@contextlib.contextmanager
def _written(out: Path | None) -> Iterator[tuple[contextlib.ExitStack, BinaryIO]]:
    """Where an export goes: `out` (written aside, renamed over it once complete) or stdout.

    Yields the stack the export may enter more contexts on, and the sink. An export that ends
    any other way (refused, a file or storage error, Ctrl-C) removes its partial file, and a
    complete one the partial files killed exports left beside `out` (hostkit.atomicfile).
    A refused export or a file error ends the command as the CLI reports errors.
    """
    try:
        with contextlib.ExitStack() as stack:
            sink: BinaryIO = (
                sys.stdout.buffer if out is None else stack.enter_context(replacing(out))
            )
            yield stack, sink
            sink.flush()
    except ExportRefusedError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise click.exceptions.Exit(USAGE_ERROR_EXIT) from None
    except BrokenPipeError:
        raise  # stdout's reader went away: the collector's group ends the command quietly
    except OSError as exc:
        raise click.ClickException(str(exc)) from None


def _replaceable_out(
    _context: click.Context, _param: click.Parameter, out: Path | None
) -> Path | None:
    """`--out` as given, unless its folder is not there or no regular file is at it.

    The export is renamed over `out` when complete: a device, FIFO or symbolic link there
    (`/dev/stdout`, `/dev/full`) would be replaced by a file, not written to.
    """
    if out is None:
        return None
    folder = out.parent
    if not folder.is_dir():  # the partial file goes beside `out`: say so before the export runs
        says = "is not a folder" if folder.exists() else "does not exist"
        raise click.BadParameter(f"{folder} {says} (the export is written beside --out)")
    try:
        mode = out.lstat().st_mode
    except FileNotFoundError:
        return out
    except OSError as exc:
        raise click.BadParameter(f"{out}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise click.BadParameter(
            f"{out} is not a regular file (the export would replace it);"
            " leave --out out to write to stdout"
        )
    return out


@click.command()
@config_option
@click.option(
    "--format",
    "export_format",
    required=True,
    type=click.Choice(["csv", "aqss"]),
    help="csv: every reading, the columns of GET /v1/readings as text/csv (UTF-8, RFC 4180);"
    " aqss: coal MT/T 1201-style text, AQMC point definitions then AQSS realtime values.",
)
@click.option("--gateway", "gateway_id", required=True, help="The gateway (aqss: a coal mine's).")
@click.option("--from", "t_from", required=True, help="ISO 8601 with offset, inclusive.")
@click.option("--to", "t_to", required=True, help="ISO 8601 with offset, exclusive.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    callback=_replaceable_out,
    help="Write here (replaced atomically when done) instead of stdout.",
)
@click.option(
    "--tz",
    "tz",
    metavar="±HH:MM",
    help="csv: the UTC offset times are shown at. Default: api.tz of the config.",
)
def export(
    *,
    config_path: Path,
    export_format: str,
    gateway_id: str,
    t_from: str,
    t_to: str,
    out: Path | None,
    tz: str | None,
) -> None:
    """Export a gateway's stored readings in [--from, --to): CSV, or coal MT/T 1201 text."""
    config = load_or_exit(config_path)
    start, end = time_option("--from", t_from), time_option("--to", t_to)
    if start >= end:
        raise click.BadParameter("must be later than --from", param_hint="--to")
    zone = _zone_option(tz, config.api.tz)
    if export_format == "csv":
        _csv_command(config, gateway_id, (start, end), zone, out)
        return
    with _written(out) as (_, sink):
        summary = with_storage(
            config,
            lambda storage: _export_aqss(
                storage, gateway_id, start, end, lambda text: sink.write(text.encode())
            ),
        )
    # stdout may be the export itself: the summary goes to stderr.
    click.echo(
        f"exported {summary.readings} readings of {len(summary.points)} points"
        f" of gateway {gateway_id} to {out or 'stdout'}",
        err=True,
    )
    odd = nonconforming_points(summary.points)
    if odd:
        click.echo(
            f"warning: {len(odd)} point codes are not {{mine}}-{{station}}-{{transducer}};"
            " exported with station 000000 and the point code as transducer code: "
            + ", ".join(odd),
            err=True,
        )


def _csv_command(
    config: CollectorConfig,
    gateway_id: str,
    window: tuple[float, float],
    zone: timezone,
    out: Path | None,
) -> None:
    """Run the CSV export to `out` (atomically) or stdout, with a progress bar on a terminal."""
    with _written(out) as (stack, sink):
        # Counting the window first would cost a scan as long as the export itself: the
        # bar counts rows without a total.
        progress: _Progress = (
            stack.enter_context(
                click.progressbar(
                    iter(int, 1),  # endless: the length is unknown
                    label=f"exporting {gateway_id}",
                    show_pos=True,
                    file=sys.stderr,
                )
            )
            if sys.stderr.isatty()
            else _Unseen()
        )
        count = with_storage(
            config,
            lambda storage: _export_csv(
                storage,
                gateway_id,
                window,
                zone,
                write=lambda text: sink.write(text.encode("utf-8")),
                progress=progress,
            ),
        )
    click.echo(
        f"exported {count} readings of gateway {gateway_id} to {out or 'stdout'}"
        f" (times at {offset_text(zone)})",
        err=True,
    )
