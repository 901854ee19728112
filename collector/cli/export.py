"""`collector export`: a coal gateway's stored readings as MT/T 1201-style text."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import click

from collector.cli.common import config_option, load_or_exit, with_storage
from collector.export.aqss import (
    BATCH_END,
    CoalReading,
    PointInfo,
    PointSeen,
    aqmc_batch,
    aqss_record,
    header,
    nonconforming_points,
    note_points,
)
from collector.model import ReadingAfter, ReadingFilter, SourcedReading
from collector.storage.base import Storage
from specs.catalogue import default_catalogue
from specs.records import RecordFormatError, parse_iso_time

USAGE_ERROR_EXIT: Final = 2
EXPORT_PAGE: Final = 5000
COAL_DOMAIN: Final = "MK"


class ExportRefusedError(Exception):
    """The export cannot be made for this gateway (unknown, no blocks, not a coal mine)."""


def _iso_option(name: str, text: str) -> float:
    try:
        return parse_iso_time(text)
    except RecordFormatError as exc:
        raise click.BadParameter(
            f"{exc}; e.g. 2026-05-28T08:00:00+08:00", param_hint=name
        ) from None


def _coal(row: SourcedReading) -> CoalReading | None:
    if row.domain != COAL_DOMAIN or row.mine_code is None:
        return None  # a block sent before the gateway became a coal mine's
    reading = row.reading
    return CoalReading(
        mine_code=row.mine_code,
        point=reading.point,
        quota=reading.quota,
        t=reading.t,
        value=reading.value,
        unit=reading.unit,
        quality=reading.quality,
    )


@dataclass(frozen=True, slots=True)
class _ExportSummary:
    points: tuple[PointSeen, ...]
    readings: int


async def _coal_pages(
    storage: Storage, where: ReadingFilter, *, up_to_row: int | None = None
) -> AsyncIterator[tuple[list[CoalReading], int]]:
    """Pages of coal readings (rows after `up_to_row` left out) with the page's last row id."""
    after: ReadingAfter | None = None
    while True:
        page = await storage.sourced_readings(where, after=after, limit=EXPORT_PAGE)
        rows = [r for r in page.items if up_to_row is None or r.reading.rowid <= up_to_row]
        yield (
            [coal for row in rows if (coal := _coal(row)) is not None],
            max((r.reading.rowid for r in page.items), default=0),
        )
        if not page.more or not page.items:
            return
        last = page.items[-1].reading
        after = (last.gateway, last.point, last.t, last.rowid)


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
    infos = {
        point: PointInfo(meta.name, meta.device, meta.thresholds, meta.issued_at)
        for point, meta in (await storage.point_metas(gateway)).items()
    }
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


@click.command()
@config_option
@click.option(
    "--format",
    "export_format",
    required=True,
    type=click.Choice(["aqss"]),
    help="aqss: coal MT/T 1201-style text, AQMC point definitions then AQSS realtime values.",
)
@click.option("--gateway", "gateway_id", required=True, help="A coal mine's gateway.")
@click.option("--from", "t_from", required=True, help="ISO 8601 with offset, inclusive.")
@click.option("--to", "t_to", required=True, help="ISO 8601 with offset, exclusive.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write here (replaced atomically when done) instead of stdout.",
)
def export(
    *,
    config_path: Path,
    export_format: str,
    gateway_id: str,
    t_from: str,
    t_to: str,
    out: Path | None,
) -> None:
    """Export a coal gateway's stored readings as MT/T 1201-style text (UTF-8)."""
    config = load_or_exit(config_path)
    start, end = _iso_option("--from", t_from), _iso_option("--to", t_to)
    if start >= end:
        raise click.BadParameter("must be later than --from", param_hint="--to")
    assert export_format == "aqss"  # noqa: S101 - click.Choice admits nothing else
    partial = None if out is None else out.with_name(f".{out.name}.partial")
    try:
        with contextlib.ExitStack() as stack:
            sink: BinaryIO = (
                sys.stdout.buffer if partial is None else stack.enter_context(partial.open("wb"))
            )
            summary = with_storage(
                config,
                lambda storage: _export_aqss(
                    storage, gateway_id, start, end, lambda text: sink.write(text.encode())
                ),
            )
            sink.flush()
        if partial is not None and out is not None:
            partial.replace(out)
    except ExportRefusedError as exc:
        if partial is not None:
            partial.unlink(missing_ok=True)
        click.echo(f"Error: {exc}", err=True)
        raise click.exceptions.Exit(USAGE_ERROR_EXIT) from None
    except OSError as exc:
        if partial is not None:
            partial.unlink(missing_ok=True)
        raise click.ClickException(str(exc)) from None
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
