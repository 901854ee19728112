"""A sealer behind its readings seals several full blocks in one outbox transaction.

Each block is what it would be alone (at most flush_readings records, in order, chained);
only the fsync is shared. With alarms, each block's batch is evaluated from the state the
block before it leaves (tests/integration/test_alarm_state.py).
"""

from __future__ import annotations

from pathlib import Path

from edge_agent.core.chain import SealedBlock
from edge_agent.shell.outbox import Outbox
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.sealer import GROUP_BLOCKS
from tests.support.outbox_chain import assert_valid_chain
from tests.support.outbox_site import KEY, SITE, numbered_reading
from tests.support.sealer_rig import count_transactions, running_sealer


async def _seal_queued(outbox: Outbox, count: int, flush_readings: int) -> list[SealedBlock]:
    async with running_sealer(outbox, flush_readings=flush_readings) as run:
        for i in range(count):  # all queued before the run starts (no await in between)
            run.queue.put_nowait(numbered_reading(i))
        await run.until_sealed(count)
    return run.blocks


async def test_queued_readings_are_sealed_as_full_blocks_in_one_transaction(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        groups = count_transactions(outbox)
        sealed = await _seal_queued(outbox, 50 * (GROUP_BLOCKS + 2) + 7, flush_readings=50)
    assert [block.records for block in sealed] == [50] * (GROUP_BLOCKS + 2) + [7]
    assert groups[0] == GROUP_BLOCKS
    assert sum(groups) == len(sealed)
    assert [block.seq for block in sealed] == list(range(1, len(sealed) + 1))
    assert assert_valid_chain(path) == len(sealed)
