"""The seq mark's `flock`, held by another process, never stops the agent's event loop.

The agent and `edge-agent backfill` (a second process on the same outbox) read and write the
seq mark beside it (`outbox_seq_mark.SeqMark`) under an `flock`. It was taken blocking, on the
event loop: a backfill stopped with Ctrl-Z inside its write froze the whole agent (no polling,
no MQTT keepalive, no ACKs, the ring of readings overflowing) until it went on. Shown here with
a real second process holding that flock, and a task of the loop counting its turns while the
agent's seal waits for the mark: none before.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge_agent.core.losses import LostReadings
from edge_agent.core.seq_mark_record import Mark
from edge_agent.shell import outbox_open
from edge_agent.shell.outbox_epoch_lock import OpeningStoppedError
from edge_agent.shell.outbox_recovery import OutboxUnavailableError
from edge_agent.shell.outbox_seq_mark import SeqMark
from edge_agent.shell.sealer import Sealer
from specs.records import Record
from tests.support.flock_waits import locks_on, until, waited_on_here
from tests.support.held_process import HOLD_FLOCK, Held, held_process
from tests.support.outbox_file import newest_seq
from tests.support.outbox_openings import LET_GO, opened_and_closed, rolled_back
from tests.support.outbox_site import KEY, SITE, T0
from tests.support.records import reading_at

pytestmark = pytest.mark.timeout(120)

# Turns of the loop counted while the seal waits for the mark; then the holder lets go.
TURNS = 100


@contextmanager
def _released_once_waited_on(
    held: Held, path: Path, turned: threading.Event
) -> Iterator[tuple[threading.Event, threading.Event]]:
    """A thread that lets the holder go once this process waits on `path` and the loop has
    turned (`turned`), or 20 s after it began waiting if the loop never does (it is stopped).

    Yields (waiting, released) as that thread sets them.
    """
    waiting, released, done = threading.Event(), threading.Event(), threading.Event()

    def release() -> None:
        while not waited_on_here(path):
            if done.is_set():
                return
            time.sleep(0.001)
        waiting.set()
        turned.wait(timeout=20)  # only a loop stopped by the wait leaves it to this bound
        released.set()
        held.release()

    thread = threading.Thread(target=release, name="releaser", daemon=True)
    thread.start()
    try:
        yield waiting, released
    finally:
        done.set()
        thread.join(timeout=60)


async def test_a_seal_waiting_for_a_held_mark_leaves_the_loop_turning(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    mark_path = path.with_name(path.name + ".seq")
    turned = threading.Event()
    turns = 0
    async with outbox_open.open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal((reading_at(T0, 1.0),), now=T0, clock_synced=True)
        with (
            held_process(HOLD_FLOCK, str(mark_path)) as held,
            _released_once_waited_on(held, mark_path, turned) as (waiting, released),
        ):

            async def turning() -> None:
                # Counts the loop's turns between the seal's wait on the mark and its release.
                nonlocal turns
                while True:
                    await asyncio.sleep(0)
                    if waiting.is_set() and not released.is_set() and turns < TURNS:
                        turns += 1
                        if turns == TURNS:
                            turned.set()

            ticker = asyncio.create_task(turning())
            with capture_logs() as logs:
                await outbox.seal((reading_at(T0 + 1, 1.0),), now=T0 + 1, clock_synced=True)
            ticker.cancel()
        # Before: 0, the seal's blocking flock stopped the loop until the holder let go.
        assert turns == TURNS
        # Waited for, not given up on: the mark written once the holder let go.
        assert [entry["event"] for entry in logs if "seq_mark" in entry["event"]] == [
            "seq_mark_busy"
        ]
        assert newest_seq(path) == (outbox.epoch, 2)
        assert await SeqMark.beside(path, 5.0).read() == Mark(outbox.epoch, 2, LostReadings())


async def test_a_stop_cuts_short_a_seals_wait_for_the_mark_already_running(
    tmp_path: Path,
) -> None:
    """A seal waiting for a held mark (its bound 5 s, taken when it began) as the agent stops:
    the stop's deadline (1 s here; 2 s in shut_down) ends that wait too, and the stop's flush
    seals what was queued behind it. Before, the flush waited out the 5 s: past systemd's
    TimeoutStopSec=5, SIGKILL, the queued readings lost silently."""
    path = tmp_path / "outbox.db"
    mark_path = path.with_name(path.name + ".seq")
    loop = asyncio.get_running_loop()
    async with outbox_open.open_outbox(path, SITE, KEY) as outbox:
        queue = asyncio.Queue[Record]()
        sealer = Sealer(
            outbox,
            queue,
            flush_interval=0.05,
            flush_readings=1,
            clock_synced=lambda: True,
            on_sealed=lambda _: None,
        )
        with held_process(HOLD_FLOCK, str(mark_path)), capture_logs() as logs:
            running = asyncio.create_task(sealer.run())
            await queue.put(reading_at(T0, 1.0))
            # The seal's mark write waits (bound 5 s).
            await until(lambda: waited_on_here(mark_path), "the seal never waited for the mark")
            await queue.put(reading_at(T0 + 1, 1.0))  # polled before the stop
            stopped_at = time.monotonic()
            sealer.stopping_by(loop.time() + 1.0)
            running.cancel()
            # Generous: two fsync'd seals on a loaded CI. The check is the time measured.
            async with asyncio.timeout(8):
                await sealer.flush()
            flushed_in = time.monotonic() - stopped_at
        assert newest_seq(path) == (outbox.epoch, 2)
        assert [entry["event"] for entry in logs if "seq_mark" in entry["event"]] == [
            "seq_mark_busy",
            "seq_mark_given_up",
        ]
        # Ended at the stop's deadline (1 s), not at the wait's own bound (5 s from its start).
        assert flushed_in < 4, f"the flush took {flushed_in:.2f} s"


async def _until_free(path: Path) -> None:
    """Until no process holds or waits for an flock on `path` (a given-up wait let it go)."""
    await until(lambda: not locks_on(path), f"{path.name}'s flock never let go")


async def test_a_mark_held_past_its_bound_is_caught_up_once_let_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given up on at once (bound 0), the mark waits for nothing while it is held; the seal's
    seq is noted by the next write after, the tally let go meanwhile added then."""
    monkeypatch.setattr(outbox_open, "OUTBOX_SEQ_MARK_TIMEOUT", 0.0)
    path = tmp_path / "outbox.db"
    mark_path = path.with_name(path.name + ".seq")
    async with outbox_open.open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal((reading_at(T0, 1.0),), now=T0, clock_synced=True)
        epoch = outbox.epoch
        with held_process(HOLD_FLOCK, str(mark_path)), capture_logs() as logs:
            await outbox.seal((reading_at(T0 + 1, 1.0),), now=T0 + 1, clock_synced=True)
            await outbox.note_unsealed(LET_GO)  # the sealer stopping on a full disk
            await outbox.seal((reading_at(T0 + 2, 1.0),), now=T0 + 2, clock_synced=True)
            assert await outbox.unsealed() == LET_GO  # this process's own count
        # One wait given up on; the later changes did not wait while it was still held.
        assert [entry["event"] for entry in logs if "seq_mark" in entry["event"]] == [
            "seq_mark_busy",
            "seq_mark_given_up",
        ]
        mark = SeqMark.beside(path, 5.0)
        await _until_free(mark_path)
        assert await mark.read() == Mark(epoch, 1, LostReadings())
        await outbox.seal((reading_at(T0 + 3, 1.0),), now=T0 + 3, clock_synced=True)
        assert newest_seq(path) == (epoch, 4)
        assert await mark.read() == Mark(epoch, 4, LET_GO)


async def test_an_opening_waits_for_a_held_mark_and_finds_the_file_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A start reads the mark before the file: given up on after 5 s (here at once) as a running
    agent's write is, it read as no mark, and the rollback went unseen (seqs 4, 5 sealed again).
    There is no loop to keep turning yet: it waits as long as for the epoch lock."""
    monkeypatch.setattr(outbox_open, "OUTBOX_SEQ_MARK_TIMEOUT", 0.0)
    path = tmp_path / "outbox.db"
    mark_path = path.with_name(path.name + ".seq")
    epoch = await rolled_back(path)
    turned = threading.Event()
    turned.set()  # no loop to keep turning at an opening: let go once waited on
    with (
        held_process(HOLD_FLOCK, str(mark_path)) as held,
        _released_once_waited_on(held, mark_path, turned),
        capture_logs() as logs,
    ):
        async with outbox_open.open_outbox(path, SITE, KEY) as outbox:
            # Before: the rolled-back epoch kept, its seqs 4 and 5 to be sealed again.
            assert outbox.epoch != epoch
    rolled = [entry for entry in logs if entry["event"] == "outbox_rolled_back"]
    assert [(entry["last_seq"], entry["sealed_through"]) for entry in rolled] == [(3, 5)]
    assert "seq_mark_given_up" not in [entry["event"] for entry in logs]


async def test_an_opening_refuses_a_mark_held_past_the_epoch_lock_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held past the bound (a backfill stopped with Ctrl-Z), the mark cannot vouch for the file:
    the start is refused, nothing changed, and the next start (systemd's) reads it once let go."""
    monkeypatch.setattr(outbox_open, "OUTBOX_EPOCH_LOCK_TIMEOUT", 0.0)
    path = tmp_path / "outbox.db"
    mark_path = path.with_name(path.name + ".seq")
    epoch = await rolled_back(path)
    # Before: opened in the rolled-back epoch, as if there were no mark.
    with (
        held_process(HOLD_FLOCK, str(mark_path)),
        pytest.raises(OutboxUnavailableError, match="seq mark"),
    ):
        async with outbox_open.open_outbox(path, SITE, KEY):
            pass
    await _until_free(mark_path)
    assert await SeqMark.beside(path, 5.0).read() == Mark(epoch, 5, LostReadings())
    with capture_logs() as logs:
        async with outbox_open.open_outbox(path, SITE, KEY) as outbox:
            assert outbox.epoch != epoch
    assert "outbox_rolled_back" in [entry["event"] for entry in logs]


@pytest.mark.parametrize("suffix", [".epoch-lock", ".seq"])
async def test_a_stop_gives_up_an_openings_wait_for_a_held_lock(
    tmp_path: Path, suffix: str
) -> None:
    """A stop (SIGTERM under systemd: SIGKILL 5 s later) while the opening waits for another
    process's epoch lock or seq mark (each up to 120 s) ends the wait at once, nothing changed:
    before, it waited on past the stop (still waiting 8 s on). The next start checks the file."""
    path = tmp_path / "outbox.db"
    epoch = await rolled_back(path)
    stop = asyncio.Event()
    held_path = path.with_name(path.name + suffix)
    with held_process(HOLD_FLOCK, str(held_path)):
        opening = asyncio.create_task(opened_and_closed(path, stop))
        # The stop comes once the opening's wait is running (not on a clock started before
        # the holder, whose start can take longer than that under load).
        await until(lambda: waited_on_here(held_path), "the opening never waited for the lock")
        assert not opening.done()
        stop.set()
        async with asyncio.timeout(8):
            with pytest.raises(OpeningStoppedError):
                await opening
    assert await SeqMark.beside(path, 5.0).read() == Mark(epoch, 5, LostReadings())
    with capture_logs() as logs:
        async with outbox_open.open_outbox(path, SITE, KEY) as outbox:
            assert outbox.epoch != epoch
    assert "outbox_rolled_back" in [entry["event"] for entry in logs]


async def test_an_opening_refuses_a_mark_it_cannot_read(tmp_path: Path) -> None:
    """A mark that is there but cannot be read (here a folder: EISDIR; as for EIO, EMFILE or
    no thread to wait on) is not "no mark": the rollback check would be skipped. Refused as a
    held mark is, nothing changed; before, the start went on without the check."""
    path = tmp_path / "outbox.db"
    epoch = await rolled_back(path)
    mark_path = path.with_name(path.name + ".seq")
    mark_path.unlink()
    mark_path.mkdir()
    with pytest.raises(OutboxUnavailableError, match="cannot read the outbox's seq mark"):
        await opened_and_closed(path, asyncio.Event())
    assert newest_seq(path) == (epoch, 3)


@contextmanager
def _released_once_waited_on_again(held: Held, path: Path) -> Iterator[None]:
    """A thread that lets the holder go once a second thread of this process waits on `path`:
    the first is the wait given up on, still blocked in its flock; the second is a new wait."""
    done = threading.Event()

    def release() -> None:
        while not done.is_set():
            waiting = [line for line in locks_on(path) if "-> FLOCK" in line]
            if len([line for line in waiting if f" {os.getpid()} " in line]) >= 2:
                held.release()
                return
            time.sleep(0.001)

    thread = threading.Thread(target=release, name="releaser", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=60)


async def _stopped_letting_go_while_held(
    path: Path, holding: ExitStack, *, stop_within: float, released: bool
) -> str:
    """An agent stopped on a full disk (500 readings let go) while another process holds the
    mark (given up on at once); `released`: once the close waits for it too. Its epoch."""
    mark_path = path.with_name(path.name + ".seq")
    async with outbox_open.open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal((reading_at(T0, 1.0),), now=T0, clock_synced=True)
        held = holding.enter_context(held_process(HOLD_FLOCK, str(mark_path)))
        await outbox.note_unsealed(LET_GO)  # the stop's flush (Sealer.flush)
        outbox.stopping_by(asyncio.get_running_loop().time() + stop_within)
        if released:
            holding.enter_context(_released_once_waited_on_again(held, mark_path))
        return outbox.epoch


async def test_readings_let_go_while_the_mark_is_held_are_noted_at_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stop on a full disk lets 500 readings go while the mark is held (given up on at once):
    the close waits for it, within the stop's deadline, and notes them for the next start."""
    monkeypatch.setattr(outbox_open, "OUTBOX_SEQ_MARK_TIMEOUT", 0.0)
    path = tmp_path / "outbox.db"
    mark_path = path.with_name(path.name + ".seq")
    with ExitStack() as holding, capture_logs() as logs:
        epoch = await _stopped_letting_go_while_held(path, holding, stop_within=60, released=True)
    await _until_free(mark_path)
    # Before: Mark(epoch, 1, no readings), `seq_mark_not_written` "held at close": the 500
    # declared by no start.
    assert await SeqMark.beside(path, 5.0).read() == Mark(epoch, 1, LET_GO)
    assert "seq_mark_not_written" not in [entry["event"] for entry in logs]


async def test_readings_declared_while_the_mark_is_held_are_taken_off_at_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first block after a stop on a full disk declares the 500 readings while the mark is
    held: taken off the tally at close, so the next start does not declare them again."""
    path = tmp_path / "outbox.db"
    mark_path = path.with_name(path.name + ".seq")
    async with outbox_open.open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal((reading_at(T0, 1.0),), now=T0, clock_synced=True)
        await outbox.note_unsealed(LET_GO)  # an earlier stop on a full disk
        epoch = outbox.epoch
    monkeypatch.setattr(outbox_open, "OUTBOX_SEQ_MARK_TIMEOUT", 0.0)
    with ExitStack() as holding:
        async with outbox_open.open_outbox(path, SITE, KEY) as outbox:
            carried = await outbox.unsealed()
            assert carried == LET_GO
            held = holding.enter_context(held_process(HOLD_FLOCK, str(mark_path)))
            declaring = (carried.gap(T0 + 1), reading_at(T0 + 1, 1.0))
            await outbox.seal(declaring, now=T0 + 1, clock_synced=True)
            await outbox.unsealed_declared(carried)  # as Sealer._seal does
            outbox.stopping_by(asyncio.get_running_loop().time() + 60)
            holding.enter_context(_released_once_waited_on_again(held, mark_path))
    await _until_free(mark_path)
    # Before: Mark(epoch, 1, the 500): the next start declared them a second time.
    # (The seal of seq 2, given up on too, is not noted: a mark behind its file is a healthy one.)
    assert await SeqMark.beside(path, 5.0).read() == Mark(epoch, 1, LostReadings())


async def test_a_tally_change_still_held_at_the_stops_deadline_is_logged_as_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_open, "OUTBOX_SEQ_MARK_TIMEOUT", 0.0)
    with ExitStack() as holding, capture_logs() as logs:
        # No time left of the stop.
        await _stopped_letting_go_while_held(
            tmp_path / "outbox.db", holding, stop_within=0, released=False
        )
    lost = [entry for entry in logs if entry["event"] == "seq_mark_not_written"]
    # Before: a warning, "held at close", saying nothing of what was lost.
    assert [
        (entry["log_level"], entry["let_go_not_noted"], entry["declared_not_taken_off"])
        for entry in lost
    ] == [("error", 500, 0)]


async def test_a_tally_change_whose_wait_is_cancelled_is_held_back(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    mark_path = path.with_name(path.name + ".seq")
    async with outbox_open.open_outbox(path, SITE, KEY) as outbox:
        await outbox.seal((reading_at(T0, 1.0),), now=T0, clock_synced=True)
        epoch = outbox.epoch
        with held_process(HOLD_FLOCK, str(mark_path)):
            noting = asyncio.create_task(outbox.note_unsealed(LET_GO))
            await until(lambda: waited_on_here(mark_path), "the change never waited for the mark")
            noting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await noting
        await _until_free(mark_path)
    # Before: the change dropped with the cancelled wait, the 500 declared by no start.
    assert await SeqMark.beside(path, 5.0).read() == Mark(epoch, 1, LET_GO)


async def test_a_close_waiting_for_the_mark_during_a_stop_logs_its_true_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The close's wait during a stop is bound by the stop's deadline (60 s here), not by
    OUTBOX_SEQ_MARK_TIMEOUT: `seq_mark_busy` logged it as `timeout=null` (no bound at all)."""
    monkeypatch.setattr(outbox_open, "OUTBOX_SEQ_MARK_TIMEOUT", 0.0)
    with ExitStack() as holding, capture_logs() as logs:
        await _stopped_letting_go_while_held(
            tmp_path / "outbox.db", holding, stop_within=60, released=True
        )
    bounds = [entry["timeout"] for entry in logs if entry["event"] == "seq_mark_busy"]
    assert len(bounds) == 2, bounds  # the let-go's write (given up on at once), the close's
    assert bounds[0] == 0.0
    assert isinstance(bounds[1], float), bounds
    assert 0 < bounds[1] <= 60, bounds  # what is left of the stop's 60 s; None or 0 before
