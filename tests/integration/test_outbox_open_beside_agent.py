"""An outbox opened beside the running agent (`edge-agent backfill`) while the agent seals.

The start's check (`outbox_recovery.recovery_gaps`) tells a file rolled back (a WAL cut, a
copy put back) by its last seq being below the seq mark, which the agent writes just after
each commit. The file and the mark are two reads: the agent may commit a block and write its
mark between them. The opening must not take that seal for a rollback, start a new epoch
beside the agent and declare the agent's healthy blocks lost.
Real outbox file; the agent is this test's open outbox, the second opening a real python
subprocess (as `edge-agent backfill` opens it), held at a hook until the agent has sealed.

The two cases guard different things. `file` (held after the file is inspected) is the race
d706979 fixed: with the file read before the mark, the hold fell between the two reads and the
agent's seal looked like a rollback; read in today's order it falls after both. `mark` (held
after the mark is read) falls between today's two reads: the file is then seen a seal ahead of
the mark, which is healthy. It cannot fail with d706979 reverted (the hold is then after both
reads); it fails when a file ahead of its mark is taken for a changed one (the mutant
`noted.seq != found.last_seq` in outbox_recovery.recovery_gaps: outbox_rolled_back, a new
epoch beside the agent).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.core.plan import OUTBOX_SEQ_MARK_TIMEOUT
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_seq_mark import SeqMark
from edge_agent.shell.outbox_sidecars import EpochJournal
from tests.support.held_process import held_process
from tests.support.outbox_budget import minute_block
from tests.support.outbox_file import committed_gap_records
from tests.support.outbox_site import KEY, SITE, T0

pytestmark = pytest.mark.timeout(120)

# argv: the outbox, the read after which the opening waits (`file`: the file inspected;
# `mark`: the seq mark read), the first time it is done. It says "held" and waits for a line;
# once open it says the epoch it sealed in.
_SECOND_OPENING = """
import asyncio, sys
from pathlib import Path
import edge_agent.shell.outbox_recovery as recovery
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_seq_mark import SeqMark
from tests.support.outbox_site import KEY, SITE

path, after = Path(sys.argv[1]), sys.argv[2]
held = []

def hold():
    if not held:
        held.append(True)
        print("held", flush=True)
        sys.stdin.readline()  # the agent seals a block and writes its mark meanwhile

def holding(read):
    def read_then_hold(*args, **kwargs):
        found = read(*args, **kwargs)
        hold()
        return found
    return read_then_hold

def holding_after_await(read):
    async def read_then_hold(*args, **kwargs):
        found = await read(*args, **kwargs)
        hold()
        return found
    return read_then_hold

if after == "file":
    recovery.inspect_outbox = holding(recovery.inspect_outbox)
else:
    SeqMark.read_at_opening = holding_after_await(SeqMark.read_at_opening)

async def main() -> None:
    async with open_outbox(path, SITE, KEY) as outbox:
        print("epoch", outbox.epoch, flush=True)

asyncio.run(main())
"""


@pytest.mark.parametrize("after", ["file", "mark"])
async def test_an_opening_beside_the_agent_does_not_take_its_fresh_seal_for_a_rollback(
    tmp_path: Path, after: str
) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, KEY) as agent:
        epoch = agent.epoch
        for index in range(3):
            await agent.seal(minute_block(index), now=T0 + index, clock_synced=True)
        with held_process(_SECOND_OPENING, str(path), after) as second:
            await agent.seal(minute_block(3), now=T0 + 3, clock_synced=True)  # seq 4, then its mark
            noted = await SeqMark.beside(path, OUTBOX_SEQ_MARK_TIMEOUT).read()
            assert noted is not None
            assert (noted.epoch, noted.seq) == (epoch, 4)
            said = second.release("go")  # its log lines come to stdout too
        # Before (`file`): the file seen at seq 3, the mark at 4: outbox_rolled_back, a new
        # epoch, and an outbox_restored of the agent's epoch from 1 (its lowest undelivered).
        assert [line for line in said if line.startswith("epoch ")] == [f"epoch {epoch}"]
        assert not [line for line in said if "outbox_rolled_back" in line]
        await agent.seal(minute_block(4), now=T0 + 4, clock_synced=True)
        assert agent.epoch == epoch
    assert EpochJournal.beside(path).latest() == epoch
    assert [(g.reason, g.epoch, g.from_seq) for g in committed_gap_records(path)] == []
