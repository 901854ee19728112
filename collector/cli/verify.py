"""`collector verify`: re-verify a gateway's stored blocks and hash chain, offline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import click

from collector.cli.common import (
    USAGE_ERROR_EXIT,
    config_option,
    load_or_exit,
    time_option,
    with_storage,
)
from collector.readmodel import EVERYTHING
from collector.storage.base import Storage
from collector.storage.capabilities import BlockArchive
from collector.verify.core import VerifyReport, report_json
from collector.verify.service import verify_stored
from hostkit.tables import render_table

BROKEN_EXIT: Final = 1


@dataclass(frozen=True, slots=True)
class _Refused:
    """Why no verification ran (a usage error, exit 2)."""

    reason: str


def _time_option(name: str, text: str | None) -> float | None:
    return None if text is None else time_option(name, text)


def _print_report(gateway: str, report: VerifyReport) -> None:
    if report.broken:
        rows: list[tuple[str, ...]] = [("EPOCH", "SEQ", "REASON", "DETAIL")]
        rows.extend((b.epoch, str(b.seq), b.reason.value, b.detail) for b in report.broken)
        click.echo(render_table(rows[1:], rows[0]))
    if report.holes:
        click.echo("" if not report.broken else "\n", nl=False)
        rows = [("EPOCH", "MISSING SEQS")]
        rows.extend((h.epoch, f"{h.from_seq}..{h.to_seq}") for h in report.holes)
        click.echo(render_table(rows[1:], rows[0]))
    failing = report.blocks - report.verified
    more = " (lists cut at 1000 entries)" if report.truncated else ""
    click.echo(
        f"gateway {gateway}: {report.verified} of {report.blocks} stored blocks verified,"
        f" {failing} broken, {len(report.holes)} holes{more}",
        err=True,
    )


async def _verify(
    storage: Storage, gateway: str, t_from: float | None, t_to: float | None
) -> VerifyReport | _Refused:
    if not isinstance(storage, BlockArchive):
        return _Refused("this storage backend cannot re-verify blocks yet")
    if gateway not in await storage.find_gateways([gateway]):
        return _Refused(f"gateway {gateway} is not registered")
    return await verify_stored(storage, EVERYTHING, gateway=gateway, t_from=t_from, t_to=t_to)


@click.command()
@config_option
@click.option("--gateway", "gateway_id", required=True, help="The gateway whose blocks to check.")
@click.option("--from", "t_from", help="ISO 8601 with offset: blocks received from then on.")
@click.option("--to", "t_to", help="ISO 8601 with offset: blocks received before then.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(
    *, config_path: Path, gateway_id: str, t_from: str | None, t_to: str | None, as_json: bool
) -> None:
    """Re-verify a gateway's stored blocks: hash, signature, place and hash chain.

    Exit 0 when every block verifies, 1 when any is broken (holes alone are not breaks),
    2 for a usage error.
    """
    config = load_or_exit(config_path)
    start, end = _time_option("--from", t_from), _time_option("--to", t_to)
    if start is not None and end is not None and start >= end:
        raise click.BadParameter("must be later than --from", param_hint="--to")
    outcome = with_storage(config, lambda storage: _verify(storage, gateway_id, start, end))
    if isinstance(outcome, _Refused):
        click.echo(f"Error: {outcome.reason}", err=True)
        raise click.exceptions.Exit(USAGE_ERROR_EXIT)
    if as_json:
        click.echo(json.dumps(report_json(outcome), ensure_ascii=False))
    else:
        _print_report(gateway_id, outcome)
    if not outcome.clean:
        raise click.exceptions.Exit(BROKEN_EXIT)
