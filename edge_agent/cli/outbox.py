"""`edge-agent outbox stats|export|resend -c site.yaml` (DESIGN section 6).

All three work while `edge-agent run` runs: stats and export read a snapshot through a
read-only connection; resend is one short write transaction.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from contextlib import closing
from pathlib import Path

import click

from configkit.durations import format_size
from edge_agent.cli.options import CONFIG_ERROR_EXIT, config_option, load_or_exit
from edge_agent.cli.refusals import refuse_outbox_folder_not_a_folder
from edge_agent.core.outbox_view import PayloadError, export_document
from edge_agent.shell.outbox_admin import (
    MAX_SEQ,
    OutboxAccessError,
    ResendPastEndError,
    export_blocks,
    mark_for_resend,
    summarize,
)

INCOMPLETE_EXIT = 1
_SEQ = click.IntRange(1, MAX_SEQ)


def _fail(error: Exception) -> click.exceptions.Exit:
    click.echo(str(error), err=True)
    return click.exceptions.Exit(INCOMPLETE_EXIT)


@click.group()
def outbox() -> None:
    """The outbox of sealed blocks: stats, export, resend."""


@outbox.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def stats(config_path: Path, as_json: bool) -> None:
    """What waits for the collector's ACK, and how big the outbox file is."""
    config = load_or_exit(config_path)
    refuse_outbox_folder_not_a_folder(config_path, config)
    try:
        summary = summarize(config.outbox.path, max_bytes=config.outbox.max_bytes, now=time.time())
    except OutboxAccessError as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps(summary.to_json()))
        return
    age = summary.oldest_undelivered_age_s
    click.echo(f"epoch                 {summary.epoch}")
    click.echo(f"last seq              {summary.last_seq}")
    click.echo(f"undelivered blocks    {summary.undelivered_blocks}")
    click.echo(f"undelivered readings  {summary.undelivered_readings}")
    click.echo(f"oldest undelivered    {'-' if age is None else f'{age:.1f} s ago'}")
    click.echo(
        f"size                  {format_size(summary.bytes)} of {format_size(summary.max_bytes)}"
        f" ({summary.bytes} bytes)"
    )


@outbox.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="The blocks with payload and signature.")
@click.option("--from-seq", type=_SEQ, default=1, show_default=True, help="First seq.")
@click.option("--to-seq", type=_SEQ, default=None, help="Last seq (default: the last).")
def export(config_path: Path, as_json: bool, from_seq: int, to_seq: int | None) -> None:
    """Stored blocks with their exact payload text and signature (base64), oldest first.

    Without --json, one line per block: epoch, seq, bytes, key id, delivered or not.
    """
    config = load_or_exit(config_path)
    refuse_outbox_folder_not_a_folder(config_path, config)
    if to_seq is not None and to_seq < from_seq:
        click.echo(f"--to-seq {to_seq} is before --from-seq {from_seq}", err=True)
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT)
    blocks = export_blocks(config.outbox.path, from_seq=from_seq, to_seq=to_seq or MAX_SEQ)
    out = sys.stdout.buffer
    try:
        with closing(blocks):
            # The first block opens the file: one that is no outbox fails before a byte is
            # written, not after half a JSON document.
            first = next(blocks, None)
            every = () if first is None else itertools.chain((first,), blocks)
            if as_json:
                for piece in export_document(every):
                    out.write(piece.encode("utf-8"))
            else:
                for block in every:
                    state = "delivered" if block.delivered else "undelivered"
                    line = f"{block.epoch} {block.seq} {len(block.payload)} {block.kid} {state}\n"
                    out.write(line.encode("utf-8"))
    except (OutboxAccessError, PayloadError) as exc:
        out.flush()
        raise _fail(exc) from None
    out.flush()


@outbox.command()
@config_option
@click.option("--from-seq", type=_SEQ, required=True, help="Resend blocks from this seq on.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def resend(config_path: Path, from_seq: int, as_json: bool) -> None:
    """Mark delivered blocks of the current epoch from --from-seq on for sending again.

    Exit 1 when some of those blocks were already pruned (after retention) and cannot be sent;
    2 when --from-seq is past the last sealed seq (it names that seq).
    """
    config = load_or_exit(config_path)
    refuse_outbox_folder_not_a_folder(config_path, config)
    try:
        result = mark_for_resend(config.outbox.path, from_seq=from_seq)
    except OutboxAccessError as exc:
        raise _fail(exc) from None
    except ResendPastEndError as exc:
        click.echo(str(exc), err=True)
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT) from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "epoch": result.epoch,
                    "from_seq": result.from_seq,
                    "last_seq": result.last_seq,
                    "marked": result.marked,
                    "waiting": result.waiting,
                    "pruned": result.pruned,
                }
            )
        )
    else:
        click.echo(
            f"epoch {result.epoch}, seq {from_seq}..{result.last_seq}: {result.marked} blocks"
            f" marked for resending, {result.waiting} were waiting already"
        )
    if result.pruned:
        click.echo(
            f"{result.pruned} delivered blocks from seq {from_seq} on were pruned after"
            " retention and cannot be resent",
            err=True,
        )
        raise click.exceptions.Exit(INCOMPLETE_EXIT)
