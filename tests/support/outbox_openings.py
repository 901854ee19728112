"""Openings of an outbox as a start makes them, on a file its seq mark says was rolled back.

LET_GO is what a sealer stopping on a full disk counts as unsealed in the mark.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge_agent.core.losses import LostReadings
from edge_agent.shell import outbox_open
from edge_agent.shell.outbox_seq_mark import SeqMark
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.records import reading_at

LET_GO = LostReadings(500, T0 + 100, T0 + 599)


async def rolled_back(path: Path) -> str:
    """An outbox at seq 3 whose mark says 5: two seals lost (a WAL cut); its epoch."""
    async with outbox_open.open_outbox(path, SITE, KEY) as outbox:
        for index in range(3):
            await outbox.seal((reading_at(T0 + index, 1.0),), now=T0 + index, clock_synced=True)
        epoch = outbox.epoch
    await SeqMark.beside(path, 5.0).write(epoch, 5)
    return epoch


async def opened_and_closed(path: Path, stop: asyncio.Event) -> None:
    """An opening of the outbox at `path` as a start makes it, stopped by `stop`, then closed."""
    async with outbox_open.open_outbox(path, SITE, KEY, stop=stop):
        pass
