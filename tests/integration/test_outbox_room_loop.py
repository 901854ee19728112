"""A seal that makes room in a full outbox leaves the event loop running while it decodes.

Making room reads the oldest undelivered blocks, up to `outbox.max_bytes / 20` (8 MiB at
most), decodes them and thins (or drops) them (`outbox_room.RoomMaker`). That ran on the event
loop, which the pollers share: bench/room_making.py measured it stopped 0.3-1.3 s at each
such seal of a 160 MiB outbox, for a site offline long enough to fill its outbox every few
hundred seals. Here a hook on the real decode of those blocks waits, the first time, until a
task on the loop has counted ticks: with the decode on the loop nothing can tick, and the wait
ends only at its bound, with none counted.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from edge_agent.shell import outbox_room
from edge_agent.shell.outbox_open import open_outbox
from specs.block import Block, decode_block
from tests.support.outbox_budget import MIB, minute_block, room_made
from tests.support.outbox_site import KEY, SITE, T0

pytestmark = pytest.mark.timeout(120)

TICKS = 3
# Only ends the wait when nothing can tick (the loop is the decoding thread): not a timing.
BOUND = 20.0


class LoopWatch:
    """Counts the loop's ticks while the first block that gives way is being decoded."""

    def __init__(self) -> None:
        self.decoding = threading.Event()
        self.ticked = threading.Event()
        self.ticks = 0
        self.seen = 0  # ticks counted by the end of the wait

    def decode(self, payload: bytes) -> Block:
        """The real decode; the first time, it waits for TICKS ticks of the loop."""
        if not self.decoding.is_set():
            self.decoding.set()
            self.ticked.wait(BOUND)
            self.seen = self.ticks
        return decode_block(payload)

    async def tick(self, stop: asyncio.Event) -> None:
        """A task of the loop, as a poller is: counts its turns while the decode waits."""
        while not stop.is_set():
            await asyncio.sleep(0.001)
            if self.decoding.is_set() and not self.ticked.is_set():
                self.ticks += 1
                if self.ticks >= TICKS:
                    self.ticked.set()


async def test_the_loop_runs_while_a_seal_decodes_the_blocks_that_give_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        for index in range(120):  # at the budget: thinned and dropped, nothing ACKed
            await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)
    before = room_made(path)

    watch = LoopWatch()
    monkeypatch.setattr(outbox_room, "decode_block", watch.decode)
    stop = asyncio.Event()
    ticker = asyncio.create_task(watch.tick(stop))
    async with open_outbox(path, SITE, KEY, max_bytes=MIB) as outbox:
        index = 1_000
        while not watch.decoding.is_set():  # until a seal makes room
            assert index < 1_200, "no seal made room"
            await outbox.seal(minute_block(index), now=T0 + index, clock_synced=True)
            index += 1
    stop.set()
    await ticker

    # Before: 0 ticks (the loop was the thread decoding, so the wait ran to its bound).
    assert watch.seen == TICKS
    assert room_made(path) > before  # the seal made room as ever, its loss declared
