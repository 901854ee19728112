"""A real full filesystem under the outbox: a small tmpfs, filled by a filler file.

Two cases. With an undelivered backlog, ENOSPC is met like a full budget: the oldest blocks
give way (thinned, dropped, each loss a gap record) and sealing goes on. With nothing that can
give way, the sealer keeps polling into its bounded memory ring, counts what the ring lets go,
and once space returns seals a `disk_full` gap record naming exactly those readings, then
everything it held. The books balance in both: sealed + declared lost == readings produced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge_agent.core.chain import Identity
from edge_agent.core.plan import OUTBOX_SEQ_MARK_TIMEOUT
from edge_agent.shell.outbox_open import open_outbox
from edge_agent.shell.outbox_recovery import OutboxUnavailableError
from edge_agent.shell.outbox_seq_mark import SeqMark
from edge_agent.shell.sealer import Sealer
from specs.command import map_version
from specs.records import GapReason, GapRecord, Quality, Reading, Record, iso_time
from specs.signing import signing_key_from_seed
from tests.support.cli_runs import agent_cli, in_a_process, keyed_example_site
from tests.support.outbox_file import committed_records
from tests.support.outbox_site import site_with_its_outbox
from tests.support.sealer_rig import running_sealer
from tests.support.tmpfs import mount_tmpfs, unmount

pytestmark = pytest.mark.timeout(120)

KEY = signing_key_from_seed(bytes(32))
SITE = Identity("91360100MA35GW001H-GW01", "91360100MA35GW001H", "360100", "WHP")
T0 = 1_700_000_000.0
FS_BYTES = 12 * 1024 * 1024


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 12 MiB tmpfs (the test runs as root, as CI does here; mounting is the point)."""
    mount = tmp_path / "fs"
    mount_tmpfs(mount, f"size={FS_BYTES}")
    try:
        yield mount
    finally:
        unmount(mount)


def _fill(directory: Path) -> Path:
    """Write a filler file until the filesystem has no free block left."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 4096)
    assert os.statvfs(directory).f_bavail == 0
    return filler


def _reading(i: int) -> Reading:
    point = f"T00{i % 5}-LT-01"
    return Reading(point, "WHP-LT", iso_time(T0 + i), float(i % 37), "m", Quality.GOOD)


@contextlib.asynccontextmanager
async def _sealer(
    path: Path, ring: int, max_bytes: int | None
) -> AsyncIterator[tuple[Sealer, asyncio.Queue[Record]]]:
    async with (
        open_outbox(path, SITE, KEY, max_bytes=max_bytes) as outbox,
        running_sealer(
            outbox, flush_readings=200, ring_readings=ring, queue_size=1000, count_lost=True
        ) as run,
    ):
        yield run.sealer, run.queue


async def _produce(queue: asyncio.Queue[Record], start: int, count: int) -> None:
    for i in range(start, start + count):
        await queue.put(_reading(i))
        if i % 200 == 0:
            await asyncio.sleep(0.01)


async def _until(condition: object, timeout: float = 30.0) -> None:
    assert callable(condition)
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def test_enospc_with_a_backlog_thins_and_keeps_sealing(small_fs: Path) -> None:
    path = small_fs / "outbox.db"
    produced = 40_000
    # A budget far above the filesystem: the disk, not max_bytes, is what fills up.
    async with _sealer(path, ring=5_000, max_bytes=64 * 1024 * 1024) as (sealer, queue):
        await _produce(queue, 0, 2_000)
        await _until(lambda: queue.empty() and sealer.held == 0)
        _fill(small_fs)
        await _produce(queue, 2_000, produced - 2_000)
        await _until(lambda: queue.empty() and sealer.held == 0, timeout=90)
    records = committed_records(path)
    kept = [r for r in records if isinstance(r, Reading)]
    gaps = [r for r in records if isinstance(r, GapRecord)]
    assert {g.reason for g in gaps} & {GapReason.THINNED, GapReason.OUTBOX_FULL}
    assert len(kept) + sum(g.lost or 0 for g in gaps) == produced
    assert len(set(kept)) == len(kept)


async def test_with_nothing_to_give_way_the_ring_holds_and_a_disk_full_gap_follows(
    small_fs: Path,
) -> None:
    path = small_fs / "outbox.db"
    ring = 3_000
    # No budget, so no reserve file either, and no block sealed yet: nothing can give way.
    async with _sealer(path, ring=ring, max_bytes=None) as (sealer, queue):
        filler = _fill(small_fs)
        await _produce(queue, 0, 8_000)
        await _until(lambda: queue.empty() and sealer.held == ring)
        assert sealer.lost.count > 0  # the ring was too small: the oldest gave way
        lost = sealer.lost.count
        filler.unlink()  # space returns
        await _until(lambda: sealer.held == 0 and sealer.lost.count == 0)
    records = committed_records(path)
    kept = [r for r in records if isinstance(r, Reading)]
    [gap] = [r for r in records if isinstance(r, GapRecord)]
    assert (gap.reason, gap.lost, gap.epoch) == (GapReason.DISK_FULL, lost, None)
    assert len(kept) + lost == 8_000
    # What the ring kept is the newest; what it let go is the oldest.
    assert gap.t_from == iso_time(T0)
    assert gap.t_to == iso_time(T0 + lost - 1)
    assert sorted(r.t for r in kept) == [iso_time(T0 + i) for i in range(lost, 8_000)]


async def _stopped_on_a_full_disk(path: Path, start: int, count: int) -> Path:
    """A run whose disk fills before it seals, stopped holding `count` readings; the filler."""
    async with _sealer(path, ring=3_000, max_bytes=None) as (sealer, queue):
        filler = _fill(path.parent)
        await _produce(queue, start, count)
        await _until(lambda: queue.empty() and sealer.held == count)
    return filler


async def _sealed_with_room(path: Path, start: int, count: int) -> None:
    """A run with room: it seals `count` readings (and what the mark says is owed)."""
    async with _sealer(path, ring=3_000, max_bytes=None) as (sealer, queue):
        await _produce(queue, start, count)
        await _until(lambda: queue.empty() and sealer.held == 0)


async def test_a_stop_on_a_full_disk_names_what_it_held_after_the_restart(
    small_fs: Path,
) -> None:
    path = small_fs / "outbox.db"
    # Stopped with 500 readings in memory and no room to seal them: they are gone, but
    # counted beside the outbox, and the first block after the restart names them.
    (await _stopped_on_a_full_disk(path, 0, 500)).unlink()
    await _sealed_with_room(path, 500, 10)
    records = committed_records(path)
    [gap] = [r for r in records if isinstance(r, GapRecord)]
    assert (gap.reason, gap.lost, gap.t_from, gap.t_to) == (
        GapReason.DISK_FULL,
        500,
        iso_time(T0),
        iso_time(T0 + 499),
    )
    assert [r.t for r in records if isinstance(r, Reading)] == [
        iso_time(T0 + i) for i in range(500, 510)
    ]
    # Named once: a third start finds nothing more to declare.
    await _sealed_with_room(path, 510, 1)
    assert len([r for r in committed_records(path) if isinstance(r, GapRecord)]) == 1


async def test_a_second_stop_on_a_full_disk_adds_only_what_that_run_let_go(
    small_fs: Path,
) -> None:
    """A restart while the disk fills again: the tally carried from the first stop is still in
    the mark (no seal named it), so the second stop adds only the readings it held itself."""
    path = small_fs / "outbox.db"
    (await _stopped_on_a_full_disk(path, 0, 500)).unlink()
    # Restarted with room, full again before its first seal: the 500 carried, 10 held.
    filler = await _stopped_on_a_full_disk(path, 500, 10)
    mark = await SeqMark.beside(path, OUTBOX_SEQ_MARK_TIMEOUT).read()
    assert mark is not None
    assert mark.unsealed.count == 510
    filler.unlink()
    await _sealed_with_room(path, 510, 1)
    records = committed_records(path)
    assert [(g.reason, g.lost) for g in records if isinstance(g, GapRecord)] == [
        (GapReason.DISK_FULL, 510)
    ]
    assert [r.t for r in records if isinstance(r, Reading)] == [iso_time(T0 + 510)]


async def _tally(path: Path) -> int:
    mark = await SeqMark.beside(path, OUTBOX_SEQ_MARK_TIMEOUT).read()
    assert mark is not None
    return mark.unsealed.count


async def test_readings_held_are_counted_in_the_mark_until_sealed(small_fs: Path) -> None:
    """No stop needed: what a kill would take is in the mark's tally while held (rewritten in
    place on the full disk), and taken off again once sealed, so a restart declares nothing."""
    path = small_fs / "outbox.db"
    with capture_logs() as logs:
        async with _sealer(path, ring=3_000, max_bytes=None) as (sealer, queue):
            filler = _fill(small_fs)
            await _produce(queue, 0, 500)
            # The next failed seal counts them in the tally, then says `held`.
            await _until(
                lambda: any(e["event"] == "seal_failed" and e["held"] == 500 for e in logs)
            )
            assert await _tally(path) == 500
            filler.unlink()
            await _until(lambda: sealer.held == 0)
            assert await _tally(path) == 0
    await _sealed_with_room(path, 500, 1)
    records = committed_records(path)
    assert not [g for g in records if isinstance(g, GapRecord)]
    assert len([r for r in records if isinstance(r, Reading)]) == 501


async def test_a_healthy_outbox_met_on_a_full_disk_at_start_is_left_alone(small_fs: Path) -> None:
    """The agent (re)starts while the disk is full: SQLite cannot even make the -shm file it
    needs to read the file, and the check fails with 'disk I/O error'. That says nothing of
    the file: it must not be moved aside as corrupt (its undelivered blocks abandoned). The
    open fails, naming the full disk, and once there is room the file opens as it was."""
    path = small_fs / "outbox.db"
    async with open_outbox(path, SITE, KEY) as outbox:
        for i in range(20):
            await outbox.seal(
                tuple(_reading(i * 50 + j) for j in range(50)), now=T0 + i, clock_synced=True
            )
        epoch = outbox.epoch
    filler = _fill(small_fs)
    with pytest.raises(OutboxUnavailableError, match="no room"):
        async with open_outbox(path, SITE, KEY):
            pass
    assert not list(small_fs.glob("outbox.db.corrupt-*"))
    filler.unlink()
    async with open_outbox(path, SITE, KEY) as outbox:
        assert outbox.epoch == epoch
        stats = await outbox.stats()
    assert (stats.last_seq, stats.undelivered, stats.undelivered_records) == (20, 20, 1000)


@pytest.mark.parametrize("command", ["backfill", "keys rotate"])
async def test_commands_that_seal_name_a_full_disk_at_the_outbox_check(
    small_fs: Path, tmp_path: Path, command: str
) -> None:
    """`edge-agent backfill` and `keys rotate` open the outbox as `run` does: on a full disk
    they say so, the file left as it was, instead of ending in a traceback."""
    path = small_fs / "outbox.db"
    site = await site_with_its_outbox(path, tmp_path)
    log = tmp_path / "log.csv"
    log.write_text("point,t,value\nT001-LT-01,2024-03-01 00:00:00,1.5\n", encoding="utf-8")
    extra = ["--csv", str(log)] if command == "backfill" else []
    _fill(small_fs)
    done = await asyncio.to_thread(
        in_a_process, "edge-agent", *command.split(), "-c", str(site), *extra, cwd=tmp_path
    )
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    assert f"{path}: cannot check the outbox: its disk has no room" in done.stderr
    assert not list(small_fs.glob("outbox.db.corrupt-*"))


async def test_a_pushed_map_on_probation_is_not_rolled_back_for_a_full_disk(
    small_fs: Path, tmp_path: Path
) -> None:
    """A full disk at the outbox check says nothing about the map being started: `run` on a
    pushed map on probation names the full disk and exits 1 as on any map, the map still on
    probation for the next start. Not rolled back (a good map reported `rolled_back` because
    the disk was full), nor a traceback from the rollback meeting the full disk itself."""
    path = small_fs / "outbox.db"
    site = await site_with_its_outbox(path, tmp_path)
    previous = site.read_text(encoding="utf-8")
    pushed = previous.replace("    poll: 1s\n", "    poll: 2s\n", 1)
    assert pushed != previous
    site.with_name(site.name + ".prev").write_text(previous, encoding="utf-8")
    site.write_text(pushed, encoding="utf-8")
    # The desk's state as a push leaves it (edge_agent.shell.commands), beside the outbox.
    state = path.with_name(path.name + ".commands.json")
    probation = {
        "nonce": "n1",
        "version": map_version(pushed),
        "previous": map_version(previous),
        "window": 60.0,
    }
    state.write_text(
        json.dumps({"nonces": {"n1": 9e9}, "probation": probation, "results": []}),
        encoding="utf-8",
    )
    files = {p: p.read_bytes() for p in (site, site.with_name(site.name + ".prev"), state)}
    _fill(small_fs)
    done = await asyncio.to_thread(in_a_process, "edge-agent", "run", "-c", str(site), cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 1, done.stderr
    assert f"{path}: cannot check the outbox: its disk has no room" in done.stderr
    assert "site_map_rolled_back" not in done.stdout + done.stderr
    assert {p: p.read_bytes() for p in files} == files


# A disk too full for the whole reserve when the outbox opens: an 8 MiB tmpfs of which another
# program took 6 MiB (the default budget's reserve is 3 MiB). The WAL must never grow past what
# the reserve claimed can checkpoint: before, it grew to its 2 MiB mark past the end of a 4 KiB
# file and was never checkpointed again (every ACK and every seal failed, for good).
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


def test_check_warns_of_a_disk_too_full_for_the_reserve(
    nearly_full_fs: Path, tmp_path: Path
) -> None:
    site = keyed_example_site(tmp_path)
    text = site.read_text(encoding="utf-8")
    site.write_text(
        text.replace("path: state/outbox.db", f"path: {nearly_full_fs / 'outbox.db'}"),
        encoding="utf-8",
    )
    result = agent_cli("check", "-c", str(site))
    assert result.exit_code == 0, result.output
    assert f"warning: {nearly_full_fs} has " in result.stderr
    assert "the outbox's disk reserve (3072 KiB) is not held" in result.stderr
    # With room for it, no warning.
    (nearly_full_fs / "other-program.log").unlink()
    assert "warning" not in agent_cli("check", "-c", str(site)).stderr
