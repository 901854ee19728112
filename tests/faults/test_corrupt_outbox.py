"""Fault matrix, R9: the agent's outbox file is damaged while the agent is down.

The agent is SIGKILLed (with a backlog the collector has not ACKed), the test damages the
file, and the agent starts again on it:

* garbage pages: half the pages after the header overwritten with random bytes;
* truncated: the database file cut to a little over half its size, mid-page;
* WAL cut mid-frame: the write-ahead log cut inside a frame far enough back that committed
  seals are gone; SQLite then opens an older, consistent state of the same epoch. Either the
  lost seals had reached the collector (its ACK then disagrees with the agent's chain), or
  they had not (the broker was down; the agent's seq mark beside the file disagrees).

A file that fails its check is moved aside (`<path>.corrupt-<time>`) and a new epoch starts
with an `outbox_corrupt` gap record naming the old epoch; a file silently rolled back is
found out by the collector's ACK (it holds seqs beyond the agent's chain) and a new epoch
starts with an `outbox_restored` gap record. Either way the oracle holds: what the old
file sealed is stored once or declared, nothing is stored twice, the agent stays up.
"""

from __future__ import annotations

import random
import shutil
import signal
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from demo.broker import Broker
from tests.e2e.harness import Site, wait_until
from tests.faults.common import agent_sealing, tune
from tests.faults.conftest import Conclude, MakeSite
from tests.faults.oracle import Ledger, gap_records
from tests.support.sqlite_files import LOG_SUFFIXES

pytestmark = pytest.mark.timeout(180)

WAL_HEADER = 32
FRAME_HEADER = 24


def _page_size(db: Path) -> int:
    size = int.from_bytes(db.read_bytes()[16:18], "big")
    return 65536 if size == 1 else size


def _checkpoint(db: Path) -> None:
    """Fold the WAL into the file, as a clean shutdown does, so damage to the file counts."""
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def garbage_pages(db: Path, rng: random.Random) -> str:
    _checkpoint(db)
    page = _page_size(db)
    pages = db.stat().st_size // page
    hit = sorted(rng.sample(range(1, pages), max(1, (pages - 1) // 2)))  # page 1 = index 0
    with db.open("r+b") as out:
        for index in hit:
            out.seek(index * page)
            out.write(rng.randbytes(page))
    return f"{len(hit)} of {pages} pages overwritten"


def truncated(db: Path, rng: random.Random) -> str:
    _checkpoint(db)
    size = db.stat().st_size
    cut = size // 2 + rng.randrange(1, _page_size(db))
    with db.open("r+b") as out:
        out.truncate(cut)
    return f"cut from {size} to {cut} bytes"


def _last_seq(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'last_seq'").fetchone()[0])


def wal_cut(db: Path, rng: random.Random) -> str:
    """Cut the WAL mid-frame, just far enough back that at least three seals are lost."""
    wal = db.with_name(db.name + "-wal")
    frame = FRAME_HEADER + _page_size(db)
    frames = (wal.stat().st_size - WAL_HEADER) // frame
    trial = db.parent / "wal-cut-trial"
    trial.mkdir()
    before = _last_seq_with_wal(db, trial, None)
    for back in range(1, frames):
        cut = WAL_HEADER + (frames - back) * frame + rng.randrange(1, frame)
        after = _last_seq_with_wal(db, trial, cut)
        if after <= before - 3:
            db.with_name(db.name + "-shm").unlink(missing_ok=True)
            with wal.open("r+b") as out:
                out.truncate(cut)
            shutil.rmtree(trial)
            return f"WAL cut at {cut} of {frames} frames: last seq {before} -> {after}"
    raise AssertionError(f"no cut of {frames} WAL frames loses three seals")


def _last_seq_with_wal(db: Path, trial: Path, cut: int | None) -> int:
    """The last seq SQLite would open with, the WAL cut at `cut`, tried on a copy."""
    for old in trial.iterdir():
        old.unlink()
    copy = trial / db.name
    shutil.copyfile(db, copy)
    shutil.copyfile(db.with_name(db.name + "-wal"), trial / (db.name + "-wal"))
    if cut is not None:
        with (trial / (db.name + "-wal")).open("r+b") as out:
            out.truncate(cut)
    return _last_seq(copy)


Damage = Callable[[Path, random.Random], str]


@dataclass(frozen=True)
class Variant:
    """One way to damage the outbox, and what the agent must make of it."""

    name: str
    damage: Damage
    backlog: bool  # blocks the collector never got are in the file when it is damaged
    reason: str  # the gap record that must declare the old epoch


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(
            Variant("garbage_pages", garbage_pages, backlog=True, reason="outbox_corrupt"),
            id="garbage_pages",
        ),
        pytest.param(
            Variant("truncated", truncated, backlog=True, reason="outbox_corrupt"), id="truncated"
        ),
        # test_restored_outbox.py cuts a WAL whose lost seals the collector had, in every run.
        pytest.param(
            Variant("wal_cut_delivered_tail", wal_cut, backlog=False, reason="outbox_restored"),
            id="wal_cut_delivered_tail",
            marks=pytest.mark.soak,
        ),
        pytest.param(
            Variant("wal_cut_undelivered_tail", wal_cut, backlog=True, reason="outbox_restored"),
            id="wal_cut_undelivered_tail",
        ),
    ],
)
def test_damaged_outbox_starts_a_new_epoch_and_declares_the_old_one(
    make_site: MakeSite, conclude: Conclude, broker: Broker, variant: Variant
) -> None:
    damage, backlog, reason = variant.damage, variant.backlog, variant.reason
    started = time.monotonic()
    site = agent_sealing(make_site(tune()), 6, acked=True)
    rng = random.Random(9)
    if backlog:
        # A backlog that exists nowhere but in the file (the broker is down, so no copy waits
        # in a broker queue either): the damage takes it, declared lost, never silently.
        broker.stop()
        wait_until(lambda: site.undelivered() >= 5, 30, "a backlog of 5 blocks")
    site.stop("agent", signal.SIGKILL)
    ledger = Ledger()
    before = ledger.snapshot(site)
    (old_epoch,) = {epoch for epoch, _, _ in ledger.blocks}
    what = damage(site.outbox_path, rng)
    if broker.process is None:
        broker.start()
    site.start_agent()
    # Nothing reads the file before the agent has checked (and perhaps moved) it.
    wait_until(
        lambda: site.log("agent").count('"event": "agent_started"') == 2,
        60,
        "the agent started again on the damaged outbox",
    )
    _wait_for_new_blocks(site, ledger, before + 3)
    verdict = conclude(site, ledger, f"corrupt_outbox_{variant.name}", started)
    print(f"{variant.name}: {what}")
    declared = [g for g in gap_records(ledger) if g.epoch == old_epoch]
    resealed = [g for g in declared if g.lost == 0]  # a rolled-back file's undelivered blocks
    assert [g.reason.value for g in declared] == [reason] * (len(resealed) + 1), declared
    # Open-ended: every seq of the old epoch from the first one lost on (the oracle checked
    # that each lost reading lies in the declared range); before it, the blocks the file kept
    # undelivered, sealed again under the new epoch, declared with nothing lost.
    lost = declared[-1]
    assert (lost.lost, lost.to_seq) == (None, None), declared
    assert [(g.to_seq or 0) + 1 for g in resealed] == [lost.from_seq] * len(resealed), declared
    assert verdict.epochs == 2
    moved = list(site.outbox_path.parent.glob(site.outbox_path.name + ".corrupt-*"))
    if reason == "outbox_corrupt":
        assert lost.from_seq == 1, "nothing of a corrupt file can be vouched for"
        assert [p.name for p in moved if not p.name.endswith(LOG_SUFFIXES)], "not moved aside"
    else:
        assert not moved, "a consistent file was moved aside"
    if backlog:
        assert verdict.declared_lost > 0, "the backlog lost with the file is declared"


def _wait_for_new_blocks(site: Site, ledger: Ledger, blocks: int) -> None:
    """Wait until the ledger has seen `blocks` blocks, snapshotting the outbox meanwhile."""

    def enough() -> bool:
        ledger.snapshot(site)
        return len(ledger.blocks) >= blocks

    wait_until(enough, 60, f"{blocks} blocks seen in the outbox")
