"""`edge-agent probe`: read each configured point once and show what the instrument sent.

For commissioning: raw registers next to the decoded value, unit, quality and round-trip
time, so a technician sees at once whether a point reads right; `--guess-order` decodes
multi-register points in all four byte/word orders and ranks them against the catalogue.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from drivers.base import DriverError, Quality, RawSample
from drivers.modbus.codec import DataType, register_count
from edge_agent.cli_config import CONFIG_ERROR_EXIT, config_option, load_or_exit
from edge_agent.config import SiteConfig
from edge_agent.core.normalize import normalize
from edge_agent.core.order_guess import rank_orders
from edge_agent.core.points import ResolvedPoint, resolve_points
from edge_agent.shell.devices import build_driver
from specs.catalogue import default_catalogue


@dataclass(frozen=True, slots=True)
class ProbeRow:
    """One point as probed."""

    device: str
    point: str
    quota: str
    raw: str
    decoded: float | None
    value: float | None
    unit: str
    quality: str
    flags: tuple[str, ...]
    rtt_ms: float | None
    orders: tuple[str, ...] = ()


def _raw_text(sample: RawSample) -> str:
    return " ".join(f"{word:04X}" for word in sample.raw) or "-"


def _orders(point: ResolvedPoint, sample: RawSample) -> tuple[str, ...]:
    dtype = DataType(point.dtype)
    indicator = default_catalogue().get(point.quota)
    if indicator is None or register_count(dtype) < 2 or len(sample.raw) != register_count(dtype):  # noqa: PLR2004
        return ()
    ranked = rank_orders(
        sample.raw,
        dtype,
        scale=point.scale,
        offset=point.offset,
        unit=point.unit,
        indicator=indicator,
    )
    return tuple(
        f"{c.byte_order}/{c.word_order}={'-' if c.value is None else f'{c.value:.6g}'}"
        f"{'' if c.plausible else ' (implausible)'}"
        for c in ranked
    )


async def _probe_device(
    config: SiteConfig, device_id: str, points: list[ResolvedPoint], guess: bool
) -> list[ProbeRow]:
    device = next(d for d in config.devices if d.id == device_id)
    driver = build_driver(device, points)
    by_code = {p.point: p for p in points}
    started = time.monotonic()
    try:
        await driver.connect()
        samples = await driver.read()
    except DriverError as exc:
        samples = [
            RawSample(p.point, None, Quality.BAD, time.time(), time.monotonic(), error=str(exc))
            for p in points
        ]
    finally:
        await driver.close()
    # Per-request time: what one transaction with this device costs on this link.
    requests = max(1, len(getattr(driver, "plan", ())) or 1)
    rtt_ms = (time.monotonic() - started) * 1000 / requests
    rows = []
    for sample in samples:
        point = by_code[sample.key]
        indicator = default_catalogue().get(point.quota)
        assert indicator is not None  # noqa: S101 - the config loader refused unknown quotas
        reading = normalize(sample, point, indicator, clock_synced=True)
        rows.append(
            ProbeRow(
                device=device_id,
                point=point.point,
                quota=point.quota,
                raw=_raw_text(sample),
                decoded=sample.value,
                value=reading.value,
                unit=reading.unit,
                quality=reading.quality.value,
                flags=reading.flags,
                rtt_ms=None
                if sample.quality is Quality.BAD and not sample.raw
                else round(rtt_ms, 2),
                orders=_orders(point, sample) if guess else (),
            )
        )
    return rows


async def probe_site(config: SiteConfig, device: str | None, guess: bool) -> list[ProbeRow]:
    """Probe every device (or one), one after another, each point once."""
    by_device: dict[str, list[ResolvedPoint]] = {}
    for point in resolve_points(config):
        by_device.setdefault(point.device_id, []).append(point)
    rows: list[ProbeRow] = []
    for device_id, points in by_device.items():
        if device is None or device == device_id:
            rows.extend(await _probe_device(config, device_id, points, guess))
    return rows


def _text(rows: list[ProbeRow]) -> str:
    header = ("device", "point", "quota", "raw", "decoded", "value", "unit", "quality", "rtt ms")
    table = [header]
    table.extend(
        (
            row.device,
            row.point,
            row.quota,
            row.raw,
            "-" if row.decoded is None else f"{row.decoded:.6g}",
            "-" if row.value is None else f"{row.value:.6g}",
            row.unit,
            row.quality + (f" ({','.join(row.flags)})" if row.flags else ""),
            "-" if row.rtt_ms is None else f"{row.rtt_ms:.1f}",
        )
        for row in rows
    )
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = []
    for index, cells in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip())
        if index and rows[index - 1].orders:
            lines.extend(f"    order {order}" for order in rows[index - 1].orders)
    return "\n".join(lines)


@click.command("probe")
@config_option
@click.option("--device", "device", metavar="ID", help="Only this device.")
@click.option("--guess-order", is_flag=True, help="Rank all byte/word orders of each point.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per point.")
def probe(config_path: Path, device: str | None, guess_order: bool, as_json: bool) -> None:
    """Read each point once; print raw registers, decoded value, unit, quality, round trip."""
    config = load_or_exit(config_path)
    if device is not None and device not in {d.id for d in config.devices}:
        click.echo(f"{config_path}: no device {device!r}", err=True)
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT)
    rows = asyncio.run(probe_site(config, device, guess_order))
    if as_json:
        click.echo(json.dumps([asdict(r) for r in rows], ensure_ascii=False, indent=2))
    else:
        click.echo(_text(rows))
    if any(r.quality == "bad" for r in rows):
        raise click.exceptions.Exit(1)
