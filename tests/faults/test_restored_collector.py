"""Fault matrix: the collector's database is put back to last night's backup.

The agent keeps running. Blocks the collector had ACKed since the backup are gone from it:
those the agent's outbox still holds (delivered blocks are kept `outbox.retain_days`) can be
sent again; those retention deleted cannot. The restored collector's ACKs now say a LOWER
`acked_through` than the agent heard before, for good, and list the lost seqs `missing`.

Before the fix the agent took every such ACK for a stale one (another collector's, issued
earlier) and answered none: nothing was sent again or declared, and the collector's holes
stayed open until the agent restarted; after a restart the seqs retention had deleted were
declared `outbox_corrupt`, blaming the agent's disk. Now an ACK issued well after the one
that said the higher mark is the collector's word (`edge_agent.core.missing_blocks`): what
the outbox holds is sent again, what retention deleted is declared `released`.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest

from edge_agent.shell.outbox_prune import prune_chunk
from specs.records import GapReason
from tests.e2e.harness import Site, wait_until
from tests.faults.common import agent_sealing, sealed_more, tune
from tests.faults.conftest import Conclude, MakeSite
from tests.faults.oracle import Ledger, collector_blocks, gap_records
from tests.support.postgres import admin, run_sync
from tests.support.sqlite_files import remove_log

pytestmark = pytest.mark.timeout(300)


def _collector_db(site: Site) -> Path:
    return site.work / "state" / "collector.db"


def _postgres(site: Site) -> bool:
    return site.storage_url.startswith("postgresql")


def _backup(site: Site, target: Path) -> None:
    """A consistent copy of the live collector database, as a nightly backup takes it:
    SQLite's online backup, or `pg_dump`."""
    if _postgres(site):
        subprocess.run(
            ["pg_dump", "--format=custom", f"--file={target}", site.storage_url],
            check=True,
            timeout=60,
        )
        return
    with (
        closing(sqlite3.connect(f"file:{_collector_db(site)}?mode=ro", uri=True)) as source,
        closing(sqlite3.connect(target)) as copy,
    ):
        source.backup(copy)


def _put_back(site: Site, backup: Path) -> None:
    """The stopped collector's database replaced by the backup (on PostgreSQL, the database
    dropped, made again empty and `pg_restore`d)."""
    if _postgres(site):
        name = site.storage_url.rsplit("/", 1)[1]
        run_sync(
            lambda: admin([f'DROP DATABASE "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'])
        )
        subprocess.run(
            ["pg_restore", "--no-owner", f"--dbname={site.storage_url}", str(backup)],
            check=True,
            timeout=60,
        )
        return
    path = _collector_db(site)
    remove_log(path)
    path.write_bytes(backup.read_bytes())


def _prune(site: Site, delivered_before: float) -> int:
    """Retention on the stopped agent's outbox: the blocks delivered before the time go."""
    pruned = 0
    with closing(sqlite3.connect(site.outbox_path, isolation_level=None)) as db:
        while (gone := prune_chunk(db, delivered_before)) > 0:
            pruned += gone
    return pruned


def _open_holes(site: Site) -> list[object]:
    body = site.api("/v1/gaps", gateway=site.gateway, state="open", limit=1000)
    items = body["items"]
    assert isinstance(items, list)
    return items


@pytest.fixture(params=["sqlite", "postgresql"])
def collector_url(request: pytest.FixtureRequest) -> str | None:
    """The collector's database: SQLite in the site's folder (None), or a PostgreSQL one."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_a_collector_db_restored_from_a_backup_gets_every_reading_again_or_declared_released(
    make_site: MakeSite, conclude: Conclude, collector_url: str | None
) -> None:
    started = time.monotonic()
    site = agent_sealing(make_site(tune(), storage_url=collector_url), 3, acked=True)
    ledger = Ledger()
    backup = site.work / "collector-backup"
    _backup(site, backup)
    # Stored and ACKed after the backup: these the agent's retention deletes...
    sealed_more(site, 8)
    wait_until(lambda: site.undelivered() <= 1, 30, "the collector catching up")
    cut = time.time()
    # ...and these it still holds, delivered.
    sealed_more(site, 8)
    wait_until(lambda: site.undelivered() <= 1, 30, "the collector catching up")
    site.stop("agent")
    ledger.snapshot(site)
    ledger.observe(collector_blocks(site))
    assert _prune(site, cut) >= 8
    # The agent runs on (its memory of the highest ACK too) while the collector goes back.
    site.start_agent()
    sealed_more(site, 3)
    wait_until(lambda: site.undelivered() <= 1, 30, "ACKs before the restore")
    site.stop("collector")
    ledger.snapshot(site)
    _put_back(site, backup)
    site.start_collector()
    sealed_more(site, 2)
    wait_until(lambda: bool(_open_holes(site)), 30, "the restored collector's holes")
    wait_until(lambda: not _open_holes(site), 90, "the restored collector's holes closed")
    backend = "postgresql" if _postgres(site) else "sqlite"
    verdict = conclude(site, ledger, f"collector_db_restored_from_backup_{backend}", started)
    assert verdict.epochs == 1
    reasons = verdict.gap_reasons
    assert reasons.get(GapReason.RELEASED.value, 0) >= 1, reasons
    assert GapReason.OUTBOX_CORRUPT.value not in reasons, reasons
    # Nothing declared that the collector holds: every declared seq is one it lacks.
    stored = {(block.epoch, block.seq) for block in collector_blocks(site)}
    declared = {
        (gap.epoch, seq)
        for gap in gap_records(ledger)
        if gap.epoch is not None and gap.from_seq is not None and gap.to_seq is not None
        for seq in range(gap.from_seq, gap.to_seq + 1)
    }
    assert declared, "no seq declared"
    assert not declared & stored, sorted(declared & stored)
