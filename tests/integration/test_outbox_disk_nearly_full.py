"""An outbox opened on a nearly full disk: too little room for its whole reserve.

An 8 MiB tmpfs of which another program took 6 MiB: the full reserve (3 MiB for the default
budget) cannot be claimed. The WAL must then never grow past what the reserve claimed can
checkpoint, so the full disk is still met inside the file: sealing goes on (the oldest blocks
give way), ACKs are recorded, and the WAL is checkpointed once blocks are delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.core.chain import Identity
from edge_agent.shell.outbox_open import open_outbox
from specs.records import Quality, Reading, iso_time
from specs.signing import signing_key_from_seed
from tests.support.outbox_file import committed_records
from tests.support.sealer_rig import running_sealer
from tests.support.tmpfs import mount_tmpfs, unmount

pytestmark = pytest.mark.timeout(120)

KEY = signing_key_from_seed(bytes(32))
SITE = Identity("91360100MA35GW001H-GW01", "91360100MA35GW001H", "360100", "WHP")
T0 = 1_700_000_000.0
MIB = 1024 * 1024
BUDGET = 2 * 1024 * MIB  # the default outbox.max_bytes: far above the disk


@pytest.fixture
def nearly_full_fs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs with 6 MiB of it taken by another program's file."""
    mount = tmp_path / "fs"
    mount_tmpfs(mount, "size=8m,mode=0700")
    try:
        with (mount / "other-program.log").open("wb") as other:
            other.write(b"\0" * 6 * MIB)
        yield mount
    finally:
        unmount(mount)


def _reading(i: int) -> Reading:
    point = f"T00{i % 5}-LT-01"
    return Reading(point, "WHP-LT", iso_time(T0 + i), float(i % 37), "m", Quality.GOOD)


async def _until(condition: object, timeout: float = 30.0) -> None:
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def test_a_nearly_full_disk_is_met_inside_the_file(nearly_full_fs: Path) -> None:
    path = nearly_full_fs / "outbox.db"
    produced = 60_000
    async with (
        open_outbox(path, SITE, KEY, max_bytes=BUDGET) as outbox,
        running_sealer(
            outbox, flush_readings=200, ring_readings=5_000, queue_size=1000, count_lost=True
        ) as run,
    ):
        for i in range(produced):  # the collector is away: nothing is delivered
            await run.queue.put(_reading(i))
            if i % 200 == 0:
                await asyncio.sleep(0.01)
        await _until(lambda: run.queue.empty() and run.sealer.held == 0)
        assert os.statvfs(nearly_full_fs).f_bavail * 4096 < MIB  # the disk did fill up
        # The collector is back and stores every block, one ACK each, while readings come in
        # (as in the agent, an ACK the full file has no page for waits for the next seal's
        # room): they are recorded ...
        last_seq = (await outbox.stats()).last_seq
        more = produced
        for seq in range(1, last_seq + 1):
            for _ in range(10):
                try:
                    await outbox.delivery.mark_delivered(
                        epoch=outbox.epoch, through=seq, also=None, now=T0 + produced
                    )
                    break
                except sqlite3.OperationalError:
                    for i in range(more, more + 200):
                        await run.queue.put(_reading(i))
                    more += 200
                    await _until(lambda: run.queue.empty() and run.sealer.held == 0)
            else:
                pytest.fail(f"the ACK of seq {seq} was never recorded")
        assert (await outbox.stats()).delivered > 0
        # ... and sealing goes on, the WAL checkpointed into the file.
        for i in range(more, more + 2_000):
            await run.queue.put(_reading(i))
        more += 2_000
        await _until(lambda: run.queue.empty() and run.sealer.held == 0)
    wal = path.with_name(path.name + "-wal")
    with contextlib.suppress(FileNotFoundError):
        assert wal.stat().st_size < path.stat().st_size
    # Delivered blocks gave way first: the newest readings are all in the file.
    kept = {r.t for r in committed_records(path) if isinstance(r, Reading)}
    assert {iso_time(T0 + i) for i in range(more - 2_000, more)} <= kept
