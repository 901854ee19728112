"""`collector audit verify` on both backends, and the admin actions the CLI audits.

Exit 0 while the chain is intact, 1 once a row is changed or deleted (the newest too), with
the problem named; `gateways add` and `gateways revoke` are admin rows of the chain. The
serving collector's sealing task chains a finished minute without any other write.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from collector.audit.sealing import seal_periodically
from collector.model import AuditEntry, IngestBatch, Reason
from collector.storage import open_storage
from collector.storage.capabilities import AuditTrail
from simulators.lifecycle import cancel_task
from tests.support.collector_client import BASE_TIME, sim_gateway
from tests.support.collector_env import cli_config, wait_until
from tests.support.collector_env import collector_cli as run
from tests.support.postgres import sql_execute, sql_rows

GW = sim_gateway(1)


@pytest.fixture
def config(tmp_path: Path, storage_url: str) -> Path:
    return cli_config(tmp_path, storage_url)


def _verify(config: Path) -> tuple[int, dict[str, object]]:
    result = run("audit", "verify", "-c", str(config), "--json")
    return result.exit_code, json.loads(result.stdout)


def test_gateway_actions_are_audited_and_audit_verify_finds_a_deleted_newest_row(
    config: Path, tmp_path: Path, storage_url: str
) -> None:
    public = tmp_path / "gw.pub"
    public.write_bytes(GW.key.public().public_pem())
    assert run("gateways", "add", "-c", str(config), "--gateway", GW.gateway,
                "--public-key", str(public)).exit_code == 0  # fmt: skip
    assert run("gateways", "revoke", "-c", str(config), "--gateway", GW.gateway).exit_code == 0
    rows = asyncio.run(sql_rows(storage_url, "SELECT kind, reason, gateway FROM audit"))
    assert rows == [
        ("admin", "gateway_add", GW.gateway),
        ("admin", "gateway_revoke", GW.gateway),
    ]
    code, report = _verify(config)
    assert (code, report["rows"], report["verified"], report["broken"]) == (0, 2, 2, [])
    asyncio.run(sql_execute(storage_url, "DELETE FROM audit WHERE chain_seq = 2"))
    code, report = _verify(config)
    assert code == 1
    assert report["broken"] == [
        {"seq": 2, "problem": "rows 2..2 are missing: the chain head says 2 rows were written"}
    ]
    human = run("audit", "verify", "-c", str(config))
    assert human.exit_code == 1
    assert "BROKEN" in human.stderr


async def test_the_sealing_task_chains_a_finished_minute_by_itself(storage_url: str) -> None:
    at = BASE_TIME - BASE_TIME % 60
    async with open_storage(storage_url) as storage:
        assert isinstance(storage, AuditTrail)
        junk = AuditEntry(at, "gw", "gz/1/x", Reason.MALFORMED, "junk", "")
        await storage.ingest(IngestBatch(audits=[junk]))
        assert (await storage.audit_head())[1] == 1
        task = asyncio.create_task(seal_periodically(storage, lambda: at + 61, every=3600))
        try:
            head, open_rows = await wait_until(
                storage.audit_head, lambda state: state[0] is not None
            )
        finally:
            await cancel_task(task)
    assert head is not None
    assert (head.head_seq, open_rows) == (1, 0)
