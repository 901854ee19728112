"""`collector audit verify`: check the audit hash chain (changed, deleted or added rows)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import click

from collector.audit.chain import ChainReport
from collector.audit.verify import verify_chain
from collector.cli.common import USAGE_ERROR_EXIT, config_option, load_or_exit, with_storage
from collector.storage.base import Storage
from collector.storage.capabilities import AuditTrail

BROKEN_EXIT: Final = 1


@click.group()
def audit() -> None:
    """The audit trail: rejected messages, admin actions, command results, in a hash chain."""


async def _verify(storage: Storage) -> ChainReport | None:
    if not isinstance(storage, AuditTrail):
        return None
    return await verify_chain(storage)


@audit.command("verify")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def audit_verify(*, config_path: Path, as_json: bool) -> None:
    """Check every chained audit row: its hash, its link to the row before, and the head.

    A changed row fails its hash; a deleted one leaves missing seqs; a deleted newest row
    leaves the recorded head past the rows. Rows of the current minute are still open (not
    chained yet) and only counted. Exit 0 when the chain is intact, 1 when it is not, 2 for a
    usage error.
    """
    config = load_or_exit(config_path)
    report = with_storage(config, _verify)
    if report is None:
        click.echo("Error: this storage backend keeps no audit chain", err=True)
        raise click.exceptions.Exit(USAGE_ERROR_EXIT)
    if as_json:
        click.echo(json.dumps(report.as_json(), ensure_ascii=False))
    else:
        for problem in report.broken:
            click.echo(f"seq {problem.seq}: {problem.problem}")
        state = "intact" if report.intact else f"BROKEN ({len(report.broken)} problems)"
        click.echo(
            f"audit chain {state}: {report.verified} of {report.rows} rows verified,"
            f" head at seq {report.head_seq}, {report.open} open rows not chained yet",
            err=True,
        )
    if not report.intact:
        raise click.exceptions.Exit(BROKEN_EXIT)
