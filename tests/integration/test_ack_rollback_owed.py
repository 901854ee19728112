"""A rollback an ACK proves carries the journal's still-owed gap records into its new epoch.

An opening that starts an epoch declares the journal's owed records again beside its own
(`outbox_recovery.with_owed`): the first block carrying them may never have reached the
collector. The ACK-driven start journaled its own record only, so a later loss of the file
left the earlier epochs' holes declared by nobody. Real outbox files, a real signed ACK into
the real AckTaker.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_sidecars import EpochJournal
from specs.records import Quality, Reading, iso_time
from tests.integration.test_ack_epoch_not_started import _beyond_the_chain
from tests.support.publisher_rig import GATEWAY_KEY, SITE, ack_taker

pytestmark = pytest.mark.timeout(60)


def _reading() -> tuple[Reading, ...]:
    return (Reading("T001-LT-01", "WHP-LT", iso_time(time.time()), 1.0, "m", Quality.GOOD),)


async def test_an_ack_proven_rollback_keeps_the_owed_records_of_earlier_epochs(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    async with open_outbox(path, SITE, GATEWAY_KEY) as outbox:
        await outbox.seal(_reading(), now=time.time(), clock_synced=True)
        first = outbox.epoch
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    async with open_outbox(path, SITE, GATEWAY_KEY) as outbox:
        # The new epoch's first block declares the first epoch lost, owed until delivered.
        second = outbox.epoch
        assert [g.epoch for g in EpochJournal.beside(path).owed()] == [first]
        await outbox.seal(_reading(), now=time.time(), clock_synced=True)
        acks = ack_taker(outbox)
        await _beyond_the_chain(acks, second)  # through 8 of a file holding 1..2
        assert outbox.epoch != second
    # Before: [second] only; a loss of the file now left the first epoch declared by nobody.
    assert sorted(g.epoch or "" for g in EpochJournal.beside(path).owed()) == sorted(
        [first, second]
    )
