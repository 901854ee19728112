"""Fault matrix: the agent's disk goes back in time (a restored snapshot, a WAL cut mid-frame).

Tried as a hostile tester would: the outbox file is put back to a copy taken earlier while
the agent ran, epoch journal and all, so nothing at start tells the agent its sequence state
went back. It re-seals seqs the collector already holds, with other bytes. Before this was
fixed, later ACKs released blocks that were never stored (532 of 2,226 readings lost in one
run, no gap anywhere). Now the first ACK that disagrees with the local chain (a conflict, a
hash at the acked seq that differs, or a mark beyond the local last seq) starts a new epoch:
every undelivered reading is sealed again under it, and an `outbox_restored` gap record
closes the old epoch. The oracle then holds across both lineages of the old epoch.

A WAL cut mid-frame (a power cut during a write) leaves the seq mark beside the file ahead of
the file's last seq: the agent finds that at start, before sealing anything.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from tests.e2e.harness import Site, wait_until
from tests.faults.common import agent_sealing, sealed_more, tune
from tests.faults.conftest import Conclude, MakeSite
from tests.faults.oracle import Ledger
from tests.support.sqlite_files import remove_log

pytestmark = pytest.mark.timeout(240)


def _snapshot(site: Site, target: Path) -> None:
    """A consistent copy of the live outbox (SQLite's online backup, as a backup tool would),
    with the files beside it (epoch journal, seq mark): a whole-disk snapshot has them too."""
    with (
        closing(sqlite3.connect(f"file:{site.outbox_path}?mode=ro", uri=True)) as source,
        closing(sqlite3.connect(target)) as copy,
    ):
        source.backup(copy)
    for suffix in (".seq", ".epochs"):
        beside = site.outbox_path.with_name(site.outbox_path.name + suffix)
        target.with_name(target.name + suffix).write_bytes(beside.read_bytes())


def _restore(site: Site, snapshot: Path) -> None:
    path = site.outbox_path
    remove_log(path)
    path.write_bytes(snapshot.read_bytes())
    for suffix in (".seq", ".epochs"):
        copy = snapshot.with_name(snapshot.name + suffix)
        path.with_name(path.name + suffix).write_bytes(copy.read_bytes())


def _kill_damage_restart(
    site: Site, ledger: Ledger, damage: Callable[[Site], None], event: str, what: str
) -> None:
    """SIGKILL the agent, keep its lineage for the oracle, damage its outbox, start it again;
    wait until it logs `event` (`what` that is), then for five more sealed blocks."""
    site.stop("agent", signal.SIGKILL)
    ledger.snapshot(site)  # the lineage about to vanish
    damage(site)
    site.start_agent()
    wait_until(lambda: f'"event": "{event}"' in site.log("agent"), 60, what)
    sealed_more(site, 5)


def _wal_cut(site: Site) -> None:
    """Cut the WAL in the middle of a frame, as a power cut during a write can leave it."""
    wal = site.outbox_path.with_name(site.outbox_path.name + "-wal")
    size = wal.stat().st_size
    assert size > 32 + 24 + 4096, "the WAL holds no frame to cut"
    frame = 24 + 4096
    frames = (size - 32) // frame
    with wal.open("r+b") as handle:
        handle.truncate(32 + (frames // 2) * frame + frame // 3)


def test_an_outbox_restored_from_a_snapshot_starts_a_new_epoch_and_loses_nothing_silently(
    make_site: MakeSite, conclude: Conclude
) -> None:
    started = time.monotonic()
    site, ledger = agent_sealing(make_site(tune()), 3), Ledger()
    snapshot = site.work / "snapshot.db"
    _snapshot(site, snapshot)
    # The collector stores well past the snapshot before the disk goes back in time.
    sealed_more(site, 12)
    wait_until(lambda: site.undelivered() <= 2, 30, "the collector catching up")
    _kill_damage_restart(
        site,
        ledger,
        lambda s: _restore(s, snapshot),
        "sequence_rollback_detected",
        "the rollback proven by an ACK",
    )
    verdict = conclude(site, ledger, "outbox_restored_from_snapshot", started)
    assert verdict.epochs == 2
    assert verdict.gap_records >= 1


def test_a_wal_cut_mid_frame_is_found_at_start_by_the_seq_mark(
    make_site: MakeSite, conclude: Conclude
) -> None:
    started = time.monotonic()
    site, ledger = agent_sealing(make_site(tune()), 8), Ledger()
    wait_until(lambda: site.undelivered() <= 1, 30, "the collector catching up")
    # SIGKILL: the WAL is not checkpointed on a kill. The seq mark beside the file (the highest
    # seq sealed) finds the cut at start; were the mark lost too, the first disagreeing ACK
    # would (the snapshot case above).
    _kill_damage_restart(
        site, ledger, _wal_cut, "outbox_rolled_back", "the rollback found at start"
    )
    verdict = conclude(site, ledger, "outbox_wal_cut_mid_frame", started)
    assert verdict.epochs == 2
