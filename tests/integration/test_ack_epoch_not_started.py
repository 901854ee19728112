"""A rollback an ACK proves whose new epoch cannot be started now (the epoch lock held).

`Outbox.start_new_epoch` waits for `<outbox>.epoch-lock` at most OUTBOX_EPOCH_LOCK_TIMEOUT,
then raises OutboxUnavailableError. Raised out of the ACK handler it ended the publisher's
session, which reconnects only for MQTT errors: the publisher task crashed and the agent with
it. Met like a release that cannot be recorded, the outbox stays as it is and the collector's
next ACK proves the rollback again. Real signed ACKs into the real AckTaker on a real outbox;
the lock held by a real second process.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
from structlog.testing import capture_logs

import edge_agent.shell.outbox as sealing_side
from edge_agent.shell import outbox_sidecars
from edge_agent.shell.outbox_sidecars import EpochJournal
from edge_agent.shell.publisher_lanes import Lanes
from hostkit.backoff import ResendBackoff
from specs.signing import signature_properties
from tests.support.broker import Broker
from tests.support.collector_client import publish_properties
from tests.support.held_process import HOLD_FLOCK, held_process
from tests.support.publisher_rig import (
    COLLECTOR_KEY,
    TOPICS,
    ack_beyond_the_chain,
    ack_taker,
    gateway_publisher,
    rollback_proven,
    three_blocks,
)

pytestmark = pytest.mark.timeout(60)


def _no_space(*args: object, **kwargs: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@contextlib.contextmanager
def _not_startable(why: str, path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A start made impossible by `why`; yields what its error says.

    `lock_held`: another process holds the epoch lock. `proof_not_taken_back`: the journal's
    rewrite fails from the take-back of the proof that the new epoch sealed nothing on (a disk
    that filled up), inside its first block's transaction, before the commit.
    """
    if why == "lock_held":
        with held_process(HOLD_FLOCK, str(path) + ".epoch-lock"):
            yield "another process has been starting"
        return
    taken_back = EpochJournal.sealed_in

    def on_a_full_disk(journal: EpochJournal, epoch: str) -> bool:
        with monkeypatch.context() as full:
            full.setattr(outbox_sidecars, "replace_file", _no_space)
            return taken_back(journal, epoch)

    with monkeypatch.context() as patched:
        patched.setattr(EpochJournal, "sealed_in", on_a_full_disk)
        yield "cannot take back the proof that epoch"


@pytest.mark.parametrize("why", ["lock_held", "proof_not_taken_back"])
async def test_an_epoch_that_cannot_be_started_is_logged_and_tried_at_the_next_ack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    path = tmp_path / "outbox.db"
    async with three_blocks(path, monkeypatch) as outbox:
        wake = asyncio.Event()
        lanes = Lanes(4, ResendBackoff(1.0))
        lanes.add_live(3)  # what the lanes hold: a new epoch forgets it, nothing else may
        acks = ack_taker(outbox, lanes=lanes, wake=wake)
        old = outbox.epoch
        with _not_startable(why, path, monkeypatch) as error, capture_logs() as logs:
            # Before: OutboxUnavailableError out of on_ack (the publisher task crashed).
            await ack_beyond_the_chain(acks, old)
        [not_started] = [e for e in logs if e["event"] == "epoch_not_started"]
        assert error in str(not_started["error"])
        # Nothing changed: same epoch (the file's, followed again after a first block sealed
        # and rolled back), nothing released, the lanes as they were.
        assert outbox.epoch == old
        if why == "proof_not_taken_back":  # journaled, proven to have sealed nothing
            assert EpochJournal.beside(path).latest() != old
            assert EpochJournal.beside(path).latest_sealed_nothing()
        undelivered = await outbox.delivery.undelivered(after=0, limit=10)
        assert [(b.epoch, b.seq) for b in undelivered] == [(old, 1), (old, 2), (old, 3)]
        assert (lanes.is_idle, wake.is_set()) == (False, False)
        # The lock free, the collector's next ACK proves it again and the epoch starts.
        await ack_beyond_the_chain(acks, old)
        assert outbox.epoch != old
        blocks = await outbox.delivery.undelivered(after=0, limit=10)
        assert {b.epoch for b in blocks} == {outbox.epoch}
        assert (lanes.is_idle, wake.is_set()) == (True, True)  # forgotten, sent anew


async def test_the_publisher_stays_connected_through_an_epoch_that_cannot_be_started(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "outbox.db"
    async with three_blocks(path, monkeypatch) as outbox:
        publisher = gateway_publisher(outbox, broker.port, ack_timeout=30, max_inflight=10)
        running = asyncio.create_task(publisher.run())
        old = outbox.epoch
        payload = rollback_proven(old)
        properties = publish_properties(signature_properties(COLLECTOR_KEY.sign(payload)))
        try:
            await asyncio.wait_for(publisher.connected.wait(), 10)
            async with aiomqtt.Client(
                "127.0.0.1", broker.port, protocol=aiomqtt.ProtocolVersion.V5
            ) as collector:
                with held_process(HOLD_FLOCK, str(path) + ".epoch-lock"), capture_logs() as logs:
                    await collector.publish(TOPICS.ack, payload, qos=1, properties=properties)
                    async with asyncio.timeout(10):
                        while not running.done() and not any(
                            e["event"] == "epoch_not_started" for e in logs
                        ):
                            await asyncio.sleep(0.02)
                # Before: the publisher task ended with OutboxUnavailableError (the runtime
                # takes a worker that ended for a crash: the agent stopped, exit 1).
                assert not running.done()
                assert publisher.connected.is_set()
                assert outbox.epoch == old
                # The lock free, the next ACK starts the epoch.
                await collector.publish(TOPICS.ack, payload, qos=1, properties=properties)
                async with asyncio.timeout(10):
                    while outbox.epoch == old:
                        await asyncio.sleep(0.02)
        finally:
            publisher.stop()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)


async def test_an_epoch_started_whose_older_blocks_cannot_be_sealed_again_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The new epoch's first block (the old one declared lost) commits; sealing the old
    # epoch's blocks again under it then fails (`ack_not_recorded`; the next start or open
    # seals them). The lanes still held the old epoch's cursor, past that first block.
    async with three_blocks(tmp_path / "outbox.db", monkeypatch) as outbox:
        lanes, wake = Lanes(4, ResendBackoff(1.0)), asyncio.Event()
        acks = ack_taker(outbox, lanes=lanes, wake=wake)
        old = outbox.epoch
        await outbox.delivery.mark_delivered(epoch=old, through=1, also=None, now=time.time())
        for _ in range(2):  # the backlog lane sends 2 and 3
            block, live = await lanes.next_block(outbox.delivery) or pytest.fail("none sent")
            lanes.sending(block.seq, live=live)

        async def disk_io_error(*_args: object, **_kwargs: object) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        with monkeypatch.context() as failing, capture_logs() as logs:
            failing.setattr(sealing_side, "reseal_chunk", disk_io_error)
            await ack_beyond_the_chain(acks, old)
        assert [e["event"] for e in logs if e["event"] == "ack_not_recorded"] == [
            "ack_not_recorded"
        ]
        assert outbox.epoch != old
        # Before: not woken, and the lanes offered nothing (their cursor past seq 1).
        assert wake.is_set()
        offered = await lanes.next_block(outbox.delivery)
        assert offered is not None
        assert (offered[0].epoch, offered[0].seq) == (outbox.epoch, 1)
