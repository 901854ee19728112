"""The outbox file tells which blocks room-making sealed in place of a block that gave way.

Room made by another process (`edge-agent backfill`) is told to no publisher; the agent reads
the file for it (`Delivery.replacement_of`, `outbox_replacement`) once its live block is found
gone. Here the room is made by the outbox's own seals, which also tell what they sealed
(`Delivery.on_replaced`): the file must say the same. On a real outbox file at a 16 MiB budget
(room made 838 KB at a time), the live block gives way with 4,200 older readings, each in a
minute of its own (kept whole by thinning): its replacement is two blocks, the first full
with the gap record that declares the live block, the live block's readings in the second.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

import pytest

from edge_agent.shell.outbox_open import open_outbox
from specs.block import decode_block
from specs.records import Record
from tests.support.outbox_budget import minute_block
from tests.support.outbox_file import read_only
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.records import reading_at

pytestmark = pytest.mark.timeout(120)

BUDGET = 16 * 1024 * 1024


def _minutes(start: int, count: int) -> tuple[Record, ...]:
    """`count` readings of one point, a minute apart from minute `start`: none is thinned."""
    first = T0 - 10**7
    return tuple(
        reading_at(first + (start + i) * 60, float(i % 50), point="T001-LT-01")
        for i in range(count)
    )


def _records(path: Path, seq: int) -> set[Record]:
    with closing(read_only(path)) as db:
        (row,) = db.execute("SELECT payload FROM blocks WHERE seq = ?", (seq,))
    return set(decode_block(bytes(row[0])).records)


async def test_the_file_tells_a_replacement_of_two_blocks_as_the_room_made_told_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    told: list[tuple[frozenset[int], tuple[int, ...]]] = []
    async with open_outbox(path, SITE, KEY, max_bytes=BUDGET) as outbox:
        outbox.delivery.on_replaced(lambda gone, sealed: told.append((gone, sealed)))
        for start in (0, 2_100):  # the backlog: 4,200 readings, 610 KB
            await outbox.seal(_minutes(start, 2_100), now=T0, clock_synced=True)
        live = await outbox.seal(minute_block(0), now=T0, clock_synced=True)
        start = 10_000
        while not any(live.seq in gone for gone, _ in told):  # imports into the full outbox
            assert start < 200_000, "the live block never gave way"
            await outbox.seal(_minutes(start, 2_100), now=T0 + start, clock_synced=True)
            start += 2_100
        ((_, sealed),) = [(gone, sealed) for gone, sealed in told if live.seq in gone]

        found = await outbox.delivery.replacement_of(live.seq)

    assert len(sealed) == 2, sealed
    # The declaring block alone would not do: the live block's readings are in the second.
    assert not set(minute_block(0)) & _records(path, sealed[0])
    assert set(minute_block(0)) & _records(path, sealed[1])
    assert found == sealed, (found, told)
