"""`collector`: keys, gateway registry, `serve` (ingest + HTTP API in one loop), and `export`.

`serve` runs `collector.runtime`, the composition root.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final, Literal, TypeVar

import click
import structlog

from collector.config import CollectorConfig, load_collector_config
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
from collector.keyfiles import (
    KeyFileError,
    create_key_files,
    load_public_key_file,
    public_key_path,
)
from collector.model import Gateway, GatewayKey, ReadingAfter, ReadingFilter, SourcedReading
from collector.runtime import serve_until_signalled
from collector.storage import open_storage
from collector.storage.base import Storage, StorageError
from specs.catalogue import default_catalogue
from specs.identifiers import (
    IdentifierError,
    check_district_code,
    check_enterprise_code,
    check_gateway_code,
)
from specs.records import RecordFormatError, iso_time, parse_iso_time
from specs.yamlconf import ConfigError

CONFIG_ERROR_EXIT: Final = 2
USAGE_ERROR_EXIT: Final = 2
EXPORT_PAGE: Final = 5000
COAL_DOMAIN: Final = "MK"
LogFormat = Literal["auto", "json", "console"]
T = TypeVar("T")


# --- logging -----------------------------------------------------------------------------------


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


# --- commands ----------------------------------------------------------------------------------


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


@click.group()
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default="auto",
    show_default=True,
    help="auto: pretty at a terminal, JSON lines otherwise.",
)
@click.option("--debug", is_flag=True, help="Log every stored block and published ACK.")
def main(log_format: LogFormat, debug: bool) -> None:
    """Province collector: verifies, stores and serves what the edge agents send."""
    configure_logging(log_format, logging.DEBUG if debug else logging.INFO)


@main.group()
def keys() -> None:
    """The collector's own key pair (it signs ACKs and commands)."""


@keys.command("init")
@config_option
def keys_init(config_path: Path) -> None:
    """Create the key at signing.key_file (0600) and its public key at <key_file>.pub."""
    config = load_or_exit(config_path)
    key_file = config.signing.key_file
    try:
        key = create_key_files(key_file)
    except KeyFileError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {key_file} and {public_key_path(key_file)}", err=True)
    click.echo(key.kid)


@main.command()
@config_option
def serve(config_path: Path) -> None:
    """Run ingest and the HTTP API until SIGINT or SIGTERM."""
    config = load_or_exit(config_path)
    try:
        asyncio.run(serve_until_signalled(config))
    except (KeyFileError, StorageError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def gateways() -> None:
    """The registry of gateways and their public keys."""


def _with_storage(config: CollectorConfig, work: Callable[[Storage], Awaitable[T]]) -> T:
    async def run() -> T:
        async with open_storage(config.storage.url) as storage:
            return await work(storage)

    try:
        return asyncio.run(run())
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None


def _gateway_identity(gateway: str, district: str | None) -> Gateway:
    enterprise = gateway.partition("-GW")[0]
    try:
        check_gateway_code(gateway, enterprise)
        check_enterprise_code(enterprise)
    except IdentifierError as exc:
        raise click.BadParameter(str(exc), param_hint="--gateway") from None
    if district is None:
        # GB 32100: characters 3-8 of the credit code are the registering authority's
        # GB/T 2260 district, the usual (not guaranteed) place of the site.
        district = enterprise[2:8]
    try:
        check_district_code(district)
    except IdentifierError as exc:
        raise click.BadParameter(str(exc), param_hint="--district") from None
    return Gateway(gateway, enterprise, district, registered_at=time.time())


@gateways.command("add")
@config_option
@click.option("--gateway", "gateway_id", required=True, help="{enterprise}-GW{NN}")
@click.option(
    "--public-key",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The gateway's public key PEM (its <key_file>.pub).",
)
@click.option(
    "--district",
    help="6-digit GB/T 2260 district of the site (default: the one in the credit code).",
)
@click.option("--kid", help="Expected key id; refused unless the key has it.")
def gateways_add(
    config_path: Path, gateway_id: str, public_key: Path, district: str | None, kid: str | None
) -> None:
    """Register a gateway (enterprise taken from its id) and add a public key to it."""
    config = load_or_exit(config_path)
    gateway = _gateway_identity(gateway_id, district)
    try:
        verify_key = load_public_key_file(public_key)
    except KeyFileError as exc:
        raise click.BadParameter(str(exc), param_hint="--public-key") from None
    if kid is not None and kid != verify_key.kid:
        raise click.BadParameter(f"the key's id is {verify_key.kid}, not {kid}", param_hint="--kid")
    key = GatewayKey(
        kid=verify_key.kid,
        gateway=gateway.gateway,
        alg=verify_key.alg,
        public_pem=verify_key.public_pem(),
        added_at=gateway.registered_at,
    )
    _with_storage(config, lambda storage: storage.register(gateway, key))
    click.echo(
        f"registered gateway {gateway.gateway} enterprise {gateway.enterprise}"
        f" district {gateway.district} key {key.kid} ({key.alg})"
    )


_LIST_COLUMNS: Final = ("GATEWAY", "ENTERPRISE", "DISTRICT", "KID", "ALG", "ADDED", "REVOKED")


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


@gateways.command("list")
@config_option
def gateways_list(config_path: Path) -> None:
    """List registered gateways and their keys."""
    config = load_or_exit(config_path)

    async def read(storage: Storage) -> tuple[tuple[Gateway, ...], tuple[GatewayKey, ...]]:
        return await storage.gateways(), await storage.keys()

    registered, keys_held = _with_storage(config, read)
    by_gateway: dict[str, list[GatewayKey]] = {}
    for key in keys_held:
        by_gateway.setdefault(key.gateway, []).append(key)
    rows: list[tuple[str, ...]] = [_LIST_COLUMNS]
    rows.extend(
        (
            gateway.gateway,
            gateway.enterprise,
            gateway.district,
            key.kid,
            key.alg,
            iso_time(key.added_at),
            "-" if key.revoked_at is None else iso_time(key.revoked_at),
        )
        for gateway in registered
        for key in by_gateway.get(gateway.gateway, [])
    )
    click.echo(_table(rows))
    click.echo(f"{len(registered)} gateways, {len(keys_held)} keys", err=True)


@gateways.command("revoke")
@config_option
@click.option("--gateway", "gateway_id", required=True, help="The gateway whose key to revoke.")
@click.option("--kid", help="The key to revoke; without it, every active key of the gateway.")
def gateways_revoke(config_path: Path, gateway_id: str, kid: str | None) -> None:
    """Revoke a gateway's key: blocks signed with it are rejected from now on."""
    config = load_or_exit(config_path)
    revoked = _with_storage(config, lambda storage: storage.revoke(gateway_id, kid, time.time()))
    if not revoked:
        which = f"key {kid}" if kid else "active key"
        raise click.ClickException(f"gateway {gateway_id} has no {which} to revoke")
    for revoked_kid in revoked:
        click.echo(f"revoked key {revoked_kid} of gateway {gateway_id}")


# --- export ------------------------------------------------------------------------------------


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


@main.command()
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
            summary = _with_storage(
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
