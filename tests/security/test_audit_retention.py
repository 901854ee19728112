"""Retention keeps every audit row younger than 180 days, and the chain verifiable after it.

`storage.audit_days` (default and minimum 180, GB/T 22239 level 3) is how long the chain's
rows are kept; the readings' retention (`raw_days`, `rollup_days`) never shortens it, and a
policy asking for less than 180 days is held to 180 in code too, not only in the config
check. Pruning drops a prefix of the chain and moves the recorded base with it, so that
`collector audit verify` still finds the rest intact (and a later deletion still shows).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.audit.chain import Action, ActionEntry
from collector.audit.verify import verify_chain
from collector.cli import main
from collector.config import parse_collector_config
from collector.model import AuditEntry, IngestBatch, Reason
from collector.storage import audit as chain_steps
from collector.storage import open_storage, prune_storage
from collector.storage.capabilities import AuditTrail
from collector.storage.retention import DAY, PruneReport, RetentionPolicy
from tests.support.collector_client import BASE_TIME
from tests.support.collector_env import heard_at, intact_audit_rows
from tests.support.config_files import COLLECTOR
from tests.support.postgres import sql_execute, sql_rows

NOW = BASE_TIME
AGES = (400, 181, 179, 10)  # days before NOW of the four actions, oldest first


async def _details(trail: AuditTrail) -> list[str]:
    return [row.detail for row in await intact_audit_rows(trail)]


async def _chain(storage_url: str) -> None:
    async with open_storage(storage_url) as storage:
        assert isinstance(storage, AuditTrail)
        for age in AGES:
            at = NOW - age * DAY
            await storage.record_actions([ActionEntry(at, Action.MAP_PUSH, "cli:t", f"{age} d")])
        # A rejection of the current minute: open, never pruned.
        stale = AuditEntry(NOW, "gw", "gz/1/x", Reason.MALFORMED, "junk", "")
        await storage.ingest(IngestBatch(audits=[stale]))


@pytest.mark.parametrize("audit_days", [180.0, 10.0])
async def test_rows_younger_than_180_days_stay_and_the_chain_still_verifies(
    storage_url: str, audit_days: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages of one row: the walk from the chain's base crosses pages as on a long trail.
    monkeypatch.setattr(chain_steps, "_PRUNE_PAGE", 1)
    await _chain(storage_url)
    # Readings' retention of one day: audit rows are kept by their own, longer rule.
    policy = RetentionPolicy(raw_days=1, rollup_days=1, audit_days=audit_days)
    report = await prune_storage(storage_url, policy, NOW)
    assert report.audit_rows_dropped == 2
    async with open_storage(storage_url) as storage:
        assert isinstance(storage, AuditTrail)
        assert await _details(storage) == ["179 d", "10 d"]
        verified = await verify_chain(storage)
        assert (verified.intact, verified.rows, verified.head_seq, verified.open) == (
            True, 2, 4, 1,
        )  # fmt: skip
        again = await prune_storage(storage_url, policy, NOW)
        assert again.audit_rows_dropped == 0
        # After pruning, deleting the oldest kept row is still found.
        await sql_execute(storage_url, "DELETE FROM audit WHERE chain_seq = 3")
        assert not (await verify_chain(storage)).intact


async def test_a_longer_audit_retention_keeps_more(storage_url: str) -> None:
    await _chain(storage_url)
    policy = RetentionPolicy(raw_days=1, audit_days=365)
    assert (await prune_storage(storage_url, policy, NOW)).audit_rows_dropped == 1
    async with open_storage(storage_url) as storage:
        assert isinstance(storage, AuditTrail)
        assert await _details(storage) == ["181 d", "179 d", "10 d"]


async def test_a_clock_ahead_deletes_no_audit_row_younger_than_180_days(storage_url: str) -> None:
    """The defect (found by the lead's review of 9a33a61, which measured every other
    retention pass from min(clock, newest reading stored) and left the audit on the clock):
    with the collector's clock a month ahead, the row 179 days old was deleted, at 149 days
    of age by the province's readings and the real date. Ages are measured like the others'."""
    await _chain(storage_url)
    await heard_at(storage_url, "gw", NOW)  # the province's newest reading: now, really
    policy = RetentionPolicy(raw_days=1, audit_days=180)
    report = await prune_storage(storage_url, policy, NOW + 30 * DAY)
    assert (report.audit_rows_dropped, report.held_back_to) == (2, NOW)
    async with open_storage(storage_url) as storage:
        assert isinstance(storage, AuditTrail)
        assert await _details(storage) == ["179 d", "10 d"]
        assert (await verify_chain(storage)).intact
    # Quiet since NOW (no reading for 200 days): aged from its newest reading, as readings are.
    later = await prune_storage(storage_url, policy, NOW + 200 * DAY)
    assert later.audit_rows_dropped == 0


async def test_audit_days_alone_prunes_the_audit_rows_and_nothing_else(storage_url: str) -> None:
    """The defect (left open by the last session): with storage.audit_days set and raw_days
    not, no retention pass ran (`serve` started none, `db prune` refused, the storage asserted
    raw_days), so the audit chain grew for ever. The pass prunes the audit rows, aged from the
    newest reading as with raw_days, and marks no cut of the readings (none is refused later)."""
    await _chain(storage_url)
    await heard_at(storage_url, "gw", NOW)
    policy = RetentionPolicy(audit_days=180)
    report = await prune_storage(storage_url, policy, NOW + 30 * DAY)  # a clock a month ahead
    assert report == PruneReport(audit_rows_dropped=2)
    async with open_storage(storage_url) as storage:
        assert isinstance(storage, AuditTrail)
        assert await _details(storage) == ["179 d", "10 d"]
        assert (await verify_chain(storage)).intact
    assert await sql_rows(storage_url, "SELECT count(*) FROM retention_state") == [(0,)]
    # Neither set: nothing is pruned at all.
    everything = RetentionPolicy(audit_days=None)
    assert not everything.prunes
    assert (await prune_storage(storage_url, everything, NOW + 400 * DAY)) == PruneReport()


def test_db_prune_runs_with_audit_days_alone(tmp_path: Path, storage_url: str) -> None:
    config = tmp_path / "collector.yaml"
    storage = f'storage: {{url: "{storage_url}", audit_days: 180}}\n'
    config.write_text(
        f'broker: "mqtt://127.0.0.1:1883"\n{storage}signing: {{key_file: keys/c.key}}\n'
        'api: {listen: "127.0.0.1:8080"}\n',
        encoding="utf-8",
    )
    asyncio.run(_chain(storage_url))
    asyncio.run(heard_at(storage_url, "gw", NOW))  # ages from NOW: the real clock is past it
    done = CliRunner().invoke(main, ["db", "prune", "-c", str(config), "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["audit_rows_dropped"] == 2
    config.write_text(config.read_text().replace(", audit_days: 180", ""), encoding="utf-8")
    refused = CliRunner().invoke(main, ["db", "prune", "-c", str(config)])
    assert refused.exit_code == 2
    assert "storage.raw_days nor storage.audit_days is set" in refused.output


def test_config_refuses_an_audit_retention_below_180_days_with_file_line_and_key(
    tmp_path: Path,
) -> None:
    text = (
        'broker: "mqtt://127.0.0.1:1883"\n'
        "storage:\n"
        '  url: "sqlite:///state/c.db"\n'
        "  raw_days: 30\n"
        "  audit_days: 90\n"
        "signing: {key_file: keys/c.key}\n"
        'api: {listen: "127.0.0.1:8080"}\n'
    )
    issue = COLLECTOR.at(tmp_path).only_issue(text)
    assert (issue.file, issue.line, issue.path) == ("collector.yaml", 5, "storage.audit_days")
    assert "at least 180" in issue.message
    fine = parse_collector_config(text.replace("90", "200"), "collector.yaml", tmp_path)
    assert fine.storage.retention.audit_days == 200
    default = parse_collector_config(text.replace("  audit_days: 90\n", ""), "c.yaml", tmp_path)
    assert default.storage.retention.audit_days == 180  # with raw_days: as before
    alone = text.replace("  raw_days: 30\n", "").replace("90", "200")
    assert parse_collector_config(alone, "c.yaml", tmp_path).storage.retention.prunes
    neither = alone.replace("  audit_days: 200\n", "")
    assert not parse_collector_config(neither, "c.yaml", tmp_path).storage.retention.prunes


@pytest.mark.parametrize("storage_urls", ["sqlite"], indirect=True)  # PostgreSQL refuses text
async def test_a_row_changed_by_hand_stops_pruning_and_is_kept_for_verify(
    storage_url: str,
) -> None:
    """SQLite keeps text in a time column: a sealed row with `at = 'yesterday'` made every
    retention run fail with a ValueError ('could not convert string to float'), which is no
    StorageError, so collector serve's retention task ended. Pruning stops at such a row: it
    and every later row stay (what cannot be read is not judged old), the rows before go, and
    verify still names it."""
    await _chain(storage_url)
    await sql_execute(
        storage_url, "UPDATE audit SET at = 'yesterday', last_at = NULL WHERE chain_seq = 2"
    )
    policy = RetentionPolicy(raw_days=1, audit_days=180)
    report = await prune_storage(storage_url, policy, NOW)
    assert report.audit_rows_dropped == 1
    async with open_storage(storage_url) as storage:
        assert isinstance(storage, AuditTrail)
        verified = await verify_chain(storage)
        assert [(p.seq, p.problem) for p in verified.broken] == [
            (2, "the row was changed: at 'yesterday' is not a number")
        ]
