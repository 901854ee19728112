"""`edge-agent probe`: read each configured point once and show what the instrument sent.

For commissioning: what came off the wire next to the decoded value, unit, quality and
round-trip time, so a technician sees at once whether a point reads right. The `raw` column
is per driver: the registers in hex for Modbus (TCP and RTU), the frame as text (control
characters escaped) for serial ASCII, the StatusCode's name for OPC UA. `--guess-order`
decodes multi-register points in all four byte/word orders and ranks them against the
catalogue.

Per driver: Modbus reads every planned request once (round trip = per request). OPC UA reads
every node with one Read call, whatever the device's mode, so the round trip is a real one and
a node's status shows without waiting for a subscription. A serial instrument with a request
is asked once; a free-running one is listened to until every point has a value or `max_age`
passes (no round trip: nothing was asked).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from drivers.base import (
    Driver,
    DriverConnectionError,
    DriverError,
    DriverProtocolError,
    DriverTimeoutError,
    Quality,
    RawSample,
)
from drivers.modbus.codec import DataType, register_count
from drivers.opcua import OpcUaSecurityError
from edge_agent.cli.options import CONFIG_ERROR_EXIT, config_option, load_or_exit
from edge_agent.config import SiteConfig
from edge_agent.core.normalize import normalize
from edge_agent.core.order_guess import rank_orders
from edge_agent.core.points import RegisterSource, ResolvedPoint, resolve_points
from edge_agent.kinds import KINDS, BoundDevice
from edge_agent.shell.buses import RtuBuses
from hostkit.tables import column_widths, render_row
from specs.catalogue import default_catalogue

_LISTEN_STEP = 0.1  # how often a free-running instrument's latest values are looked at


@dataclass(frozen=True, slots=True)
class OrderGuess:
    """One byte/word order of a multi-register point and what it decodes to (`--guess-order`)."""

    byte_order: str
    word_order: str
    value: float | None
    plausible: bool

    def __str__(self) -> str:
        value = "-" if self.value is None else f"{self.value:.6g}"
        return f"{self.byte_order}/{self.word_order}={value}" + (
            "" if self.plausible else " (implausible)"
        )


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
    orders: tuple[OrderGuess, ...] = ()  # likeliest first
    error: str | None = None  # why the read failed: the driver's message, after its kind


def _orders(point: ResolvedPoint, sample: RawSample) -> tuple[OrderGuess, ...]:
    if not isinstance(point.source, RegisterSource):
        return ()
    dtype = DataType(point.source.dtype)
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
        OrderGuess(str(c.byte_order), str(c.word_order), c.value, c.plausible) for c in ranked
    )


def _failure_kind(error: DriverError) -> str:
    if isinstance(error, OpcUaSecurityError):
        return "security_refused"
    if isinstance(error, DriverTimeoutError):
        return "timeout"
    if isinstance(error, DriverConnectionError):
        return "link_down"
    if isinstance(error, DriverProtocolError):
        return "protocol_error"
    return "read_failed"


async def _read_once(bound: BoundDevice, driver: Driver) -> list[RawSample]:
    """Read every point once; a free-running instrument is listened to for a while first."""
    samples = await driver.read()
    if bound.listen is None:
        return samples
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound.listen
    while any(s.quality is Quality.BAD for s in samples) and loop.time() < deadline:
        await asyncio.sleep(_LISTEN_STEP)
        samples = await driver.read()
    return samples


async def _probe_device(
    config: SiteConfig,
    device_id: str,
    points: list[ResolvedPoint],
    guess: bool,
    buses: RtuBuses,
) -> list[ProbeRow]:
    device = next(d for d in config.devices if d.id == device_id)
    bound = KINDS.bind(device, points)
    driver = bound.build_probe(buses)
    by_code = {p.point: p for p in points}
    read_seconds = 0.0
    try:
        await driver.connect()
        started = time.monotonic()
        samples = await _read_once(bound, driver)
        read_seconds = time.monotonic() - started
    except DriverError as exc:
        # The kind first: it becomes the reading's flag (the message starts with a device id).
        error = f"{_failure_kind(exc)}: {exc}"
        samples = [
            RawSample(p.point, None, Quality.BAD, time.time(), time.monotonic(), error=error)
            for p in points
        ]
    finally:
        await driver.close()
    # Per-request time: what one transaction with this device costs on this link.
    rtt_ms = None if bound.requests is None else read_seconds * 1000 / bound.requests
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
                raw=bound.view.raw_text(sample),
                decoded=sample.value,
                value=reading.value,
                unit=reading.unit,
                quality=reading.quality.value,
                flags=reading.flags,
                rtt_ms=None
                if rtt_ms is None or not bound.view.answered(sample)
                else round(rtt_ms, 2),
                orders=_orders(point, sample) if guess else (),
                error=sample.error,
            )
        )
    return rows


async def probe_site(config: SiteConfig, device: str | None, guess: bool) -> list[ProbeRow]:
    """Probe every device (or one), one after another, each point once."""
    by_device: dict[str, list[ResolvedPoint]] = {}
    for point in resolve_points(config):
        by_device.setdefault(point.device_id, []).append(point)
    rows: list[ProbeRow] = []
    buses = RtuBuses()  # slaves of one RS-485 port are probed over one bus, one at a time
    try:
        for device_id, points in by_device.items():
            if device is None or device == device_id:
                rows.extend(await _probe_device(config, device_id, points, guess, buses))
    finally:
        await buses.close()
    return rows


def _finite(value: float | None) -> float | None:
    return value if value is None or math.isfinite(value) else None


def _json_row(row: ProbeRow) -> dict[str, object]:
    """A row for `--json`: a NaN or infinity the device sent is null.

    JSON has no such numbers; `raw` shows the registers and `quality` says not_finite.
    """
    return asdict(
        dataclasses.replace(
            row,
            decoded=_finite(row.decoded),
            value=_finite(row.value),
            orders=tuple(dataclasses.replace(o, value=_finite(o.value)) for o in row.orders),
        )
    )


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
    widths = column_widths(table)
    lines = []
    for index, cells in enumerate(table):
        lines.append(render_row(cells, widths))
        row = rows[index - 1] if index else None
        if row is None:
            continue
        # A device that cannot be reached fails every point alike: its reason is said once.
        if row.error and (index == 1 or rows[index - 2].error != row.error):
            lines.append(f"    error: {row.error}")
        lines.extend(f"    order {order}" for order in row.orders)
    return "\n".join(lines)


@click.command("probe")
@config_option
@click.option("--device", "device", metavar="ID", help="Only this device.")
@click.option("--guess-order", is_flag=True, help="Rank all byte/word orders of each point.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="A JSON list, one object per point; with --guess-order each has `orders`: a list of"
    " {byte_order, word_order, value, plausible}, likeliest first.",
)
def probe(config_path: Path, device: str | None, guess_order: bool, as_json: bool) -> None:
    """Read each point once; print what came (registers, line, status), value, quality, rtt."""
    config = load_or_exit(config_path)
    if device is not None and device not in {d.id for d in config.devices}:
        click.echo(f"{config_path}: no device {device!r}", err=True)
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT)
    rows = asyncio.run(probe_site(config, device, guess_order))
    if as_json:
        click.echo(
            json.dumps([_json_row(r) for r in rows], ensure_ascii=False, indent=2, allow_nan=False)
        )
    else:
        click.echo(_text(rows))
    if any(r.quality == "bad" for r in rows):
        raise click.exceptions.Exit(1)
