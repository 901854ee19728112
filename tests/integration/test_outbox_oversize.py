"""Sealing a block too large for the broker again in smaller ones, on a real outbox file.

The publisher picks a block, finds it over the broker's limit and asks for it to be split; the
outbox may have started a new epoch in between (sequence state proved lost), which seals the
picked block again under a new seq. The split must then find nothing to do, not split the new
epoch's block that happens to carry the same seq.
"""

from __future__ import annotations

from pathlib import Path

from edge_agent.shell.outbox_open import open_outbox
from tests.support.outbox_site import KEY, SITE, numbered_reading

NOW = 1.7e9


async def test_a_block_picked_before_a_new_epoch_is_not_mistaken_for_the_new_epochs(
    tmp_path: Path,
) -> None:
    async with open_outbox(tmp_path / "outbox.db", SITE, KEY) as outbox:
        for first in (0, 10):
            readings = tuple(numbered_reading(first + i) for i in range(10))
            await outbox.seal(readings, now=NOW, clock_synced=True)
        picked = (await outbox.delivery.undelivered(after=0, limit=2))[1]
        await outbox.start_new_epoch((), now=NOW, clock_synced=True)
        held = await outbox.delivery.undelivered(after=0, limit=100)
        assert picked.epoch != outbox.epoch
        assert picked.seq in {block.seq for block in held}  # the same seq, another block

        split = await outbox.delivery.seal_smaller(picked, 2, now=NOW, clock_synced=True)

        assert not split
        assert await outbox.delivery.undelivered(after=0, limit=100) == held


async def test_a_block_of_the_current_epoch_is_split_and_its_seq_declared(
    tmp_path: Path,
) -> None:
    async with open_outbox(tmp_path / "outbox.db", SITE, KEY) as outbox:
        await outbox.seal(tuple(numbered_reading(i) for i in range(10)), now=NOW, clock_synced=True)
        picked = (await outbox.delivery.undelivered(after=0, limit=1))[0]

        split = await outbox.delivery.seal_smaller(picked, 2, now=NOW, clock_synced=True)

        assert split
        after = await outbox.delivery.undelivered(after=0, limit=100)
        assert picked.seq not in {block.seq for block in after}
        assert len(after) >= 3  # the gap record declaring it, and its readings in two or more
