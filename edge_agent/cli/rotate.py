"""`edge-agent keys rotate`: announce the gateway's next key under the current one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from edge_agent.cli.options import CONFIG_ERROR_EXIT, config_option, load_or_exit
from edge_agent.cli.refusals import refuse_unusable_outbox_path
from edge_agent.config import SiteConfig
from edge_agent.core.plan_compile import identity_of
from edge_agent.shell.host import clock_synchronized
from edge_agent.shell.keyfile import load_private_key
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_recovery import OutboxUnavailableError
from edge_agent.shell.rotation import Announced, announce_next_key
from hostkit.keyfiles import KeyFileError, next_key_path


async def _announce(config: SiteConfig) -> Announced:
    key_file = config.signing.key_file
    current = load_private_key(key_file)
    synced = clock_synchronized()
    async with open_outbox(
        config.outbox.path,
        identity_of(config),
        current,
        max_bytes=config.outbox.max_bytes,
        clock_synced=synced,
    ) as outbox:
        return await announce_next_key(
            outbox, key_file, current, config.signing.algorithm, clock_synced=synced
        )


@click.command("rotate")
@config_option
def rotate(config_path: Path) -> None:
    """Make the next gateway key and announce it in a block signed by the current key.

    The agent switches to the new key once the collector has ACKed that block and said it
    takes the key (the running agent at once, a stopped one at its next start); the old key
    is kept as <key_file>.retired-<kid>. A staged key the collector refused is kept as
    <key_file>.refused-<kid> and a new one is made. Safe while `edge-agent run` runs.
    """
    config = load_or_exit(config_path)
    refuse_unusable_outbox_path(config_path, config, try_writing=True)  # it seals a block
    try:
        announced = asyncio.run(_announce(config))
    except KeyFileError as exc:
        click.echo(str(exc), err=True)
        raise click.exceptions.Exit(CONFIG_ERROR_EXIT) from None
    except OutboxUnavailableError as exc:  # full disk, lock, I/O: nothing staged nor sealed
        click.echo(str(exc), err=True)
        raise click.exceptions.Exit(1) from None
    key = announced.key
    staged = next_key_path(config.signing.key_file)
    where = f"epoch {announced.epoch} seq {announced.seq}"
    if announced.refused is not None:
        click.echo(f"the collector refused the key staged before: kept at {announced.refused}")
    if announced.again:
        click.echo(f"key {key.kid} ({staged}) was staged already: announced again in {where}")
    else:
        click.echo(f"new {key.alg} key {key.kid} at {staged}, announced in {where}")
    click.echo(
        "the agent signs with it once the collector has stored that block and taken the key;"
        " until then, and the collector's overlap window after, the current key still counts"
    )
