"""The set-aside's first tally counts what the queue already holds as it starts.

A seal waiting on another process's write lock sets the readings polled meanwhile aside, and
writes the tally as it starts: by then the queue has filled for `SET_ASIDE_AFTER` (up to its
bound, 2,000 in the agent). Counted only from the next write (`NOTE_EVERY` later), a kill in
between lost those readings undeclared: the review of 5e7e408 measured 10 written while 89
were queued.
"""

from __future__ import annotations

import asyncio
from collections import deque

from edge_agent.shell.sealer import _set_aside_until
from specs.records import Record
from tests.support.outbox_site import numbered_reading


async def test_the_first_tally_of_a_set_aside_counts_the_readings_already_queued() -> None:
    queue: asyncio.Queue[Record] = asyncio.Queue(maxsize=100)
    for i in range(89):
        queue.put_nowait(numbered_reading(i))
    held: deque[Record] = deque(numbered_reading(i) for i in range(1_000, 1_010))
    seen: list[int] = []
    seal: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seal.set_result(None)  # it ends as the set-aside begins: one pass, one tally
    await _set_aside_until(seal, queue, held, 500, lambda: seen.append(len(held)))
    assert seen[0] == 99  # before: 10, the 89 queued counted only a second later
    assert queue.empty()
