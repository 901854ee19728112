"""An epoch start waiting for the epoch lock does not hold the outbox's seals up.

`Outbox.start_new_epoch` (run by the ACK handler on a proven rollback) waits for
`<outbox>.epoch-lock` while another process holds it (`edge-agent backfill` checking a large
file), at most OUTBOX_EPOCH_LOCK_TIMEOUT. It took the outbox's in-process lock first and held
it through that wait, so no block was sealed meanwhile (the sealer's ring filling, then
letting readings go). Real outbox, the lock held by a real second process; the order shown
with events, no timing.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge_agent.shell import outbox_epoch_lock, outbox_open
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_recovery import declared_gap
from specs.ack import Ack
from specs.records import GapReason, Quality, Reading, iso_time
from specs.signing import signature_properties
from tests.support.collector_client import publish_properties
from tests.support.held_process import HOLD_FLOCK, held_process
from tests.support.publisher_rig import COLLECTOR_KEY, GATEWAY_KEY, SITE, ack_taker

pytestmark = pytest.mark.timeout(60)


def _reading() -> Reading:
    return Reading("T001-LT-01", "WHP-LT", iso_time(time.time()), 1.0, "m", Quality.GOOD)


async def test_a_seal_completes_while_an_epoch_start_waits_for_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "outbox.db"
    # A bound on the failure only (before: the start gives up, then the seal goes on).
    monkeypatch.setattr(outbox_open, "OUTBOX_EPOCH_LOCK_TIMEOUT", 20.0)
    waiting = asyncio.Event()
    real_waited = outbox_epoch_lock.waited

    async def noted_wait(
        descriptor: int, lock: Path, bound: float, stop: asyncio.Event | None = None
    ) -> None:
        waiting.set()  # the start is now waiting for the other process
        await real_waited(descriptor, lock, bound, stop)

    monkeypatch.setattr(outbox_epoch_lock, "waited", noted_wait)
    async with open_outbox(path, SITE, GATEWAY_KEY) as outbox:
        await outbox.seal((_reading(),), now=time.time(), clock_synced=True)
        old = outbox.epoch
        with held_process(HOLD_FLOCK, str(path) + ".epoch-lock") as other:
            now = time.time()
            start = asyncio.create_task(
                outbox.start_new_epoch(
                    (declared_gap(GapReason.OUTBOX_RESTORED, old, 1, now),),
                    now=now,
                    clock_synced=True,
                )
            )
            await waiting.wait()
            seal = asyncio.create_task(
                outbox.seal((_reading(),), now=time.time(), clock_synced=True)
            )
            done, _ = await asyncio.wait({start, seal}, return_when=asyncio.FIRST_COMPLETED)
            # Before: the start held the outbox lock through its wait: the seal waited for it
            # (the start gave up first, OutboxUnavailableError).
            assert (seal in done, start in done) == (True, False)
            assert (seal.result().epoch, seal.result().seq) == (old, 2)
            other.release()
        await start
        assert outbox.epoch != old
        blocks = await outbox.delivery.undelivered(after=0, limit=10)
        assert {b.epoch for b in blocks} == {outbox.epoch}
        assert sum(b.readings or 0 for b in blocks) == 2  # both sealed readings, sealed again


async def test_the_ack_handler_does_not_wait_for_a_busy_epoch_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ACK handler runs in the publisher's receive loop: a wait there takes no ACK or
    command for up to OUTBOX_EPOCH_LOCK_TIMEOUT. It tries the lock once; the collector's next
    ACK proves the rollback again."""
    path = tmp_path / "outbox.db"
    monkeypatch.setattr(outbox_open, "OUTBOX_EPOCH_LOCK_TIMEOUT", 20.0)  # bounds the failure
    waiting = asyncio.Event()
    real_waited = outbox_epoch_lock.waited

    async def noted_wait(
        descriptor: int, lock: Path, bound: float, stop: asyncio.Event | None = None
    ) -> None:
        waiting.set()
        await real_waited(descriptor, lock, bound, stop)

    monkeypatch.setattr(outbox_epoch_lock, "waited", noted_wait)
    async with open_outbox(path, SITE, GATEWAY_KEY) as outbox:
        for _ in range(3):
            await outbox.seal((_reading(),), now=time.time(), clock_synced=True)
        acks = ack_taker(outbox)
        old = outbox.epoch
        payload = Ack(SITE.gateway, old, 8, (), 3, iso_time(time.time())).encode()
        properties = publish_properties(signature_properties(COLLECTOR_KEY.sign(payload)))
        with held_process(HOLD_FLOCK, str(path) + ".epoch-lock"), capture_logs() as logs:
            await acks.on_ack(payload, properties)
        # Before: the handler waited for the other process (gave up after the timeout).
        assert not waiting.is_set()
        assert [e["event"] for e in logs if e["event"] == "epoch_not_started"] == [
            "epoch_not_started"
        ]
        assert outbox.epoch == old
        await acks.on_ack(payload, properties)  # the lock free: the next ACK starts it
        assert outbox.epoch != old
