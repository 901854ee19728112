"""A one-shot command's stdout is its data: what it logs meanwhile goes to stderr.

`collector db prune --json` and `db upgrade --json` print JSON for a script; opening the
database may log (here PostgreSQL's `future_partition_indexed`, a `readings_future` made before
its index existed). `edge-agent backfill --json` likewise, and opening the outbox may log what
its recovery found. Each command runs as a real process on a real database or outbox.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from collector.api.csv_rows import READING_COLUMNS
from collector.storage import open_storage
from collector.storage.postgres.partitions import FUTURE, FUTURE_INDEX
from collector.storage.postgres.schema import SCHEMA_VERSION
from demo.__main__ import write_configs
from edge_agent.config import load_site_config
from specs.records import iso_time
from tests.support.collector_api import NANCHANG, level, store_blocks
from tests.support.collector_client import BASE_TIME
from tests.support.collector_env import register, write_collector_config

COLLECTOR = "from collector.cli import main; main()"
AGENT = "from edge_agent.cli import main; main()"
FROM, TO = iso_time(BASE_TIME - 60), iso_time(BASE_TIME + 60)


async def _future_without_its_index(url: str) -> None:
    """A gateway with readings, and `readings_future` as a collector older than its index
    left it: the next open builds that index and logs `future_partition_indexed`."""
    async with open_storage(url) as storage:
        await register(storage, NANCHANG)
        await store_blocks(storage, NANCHANG, [[level(BASE_TIME + i, i / 8) for i in range(3)]])
    db = await asyncpg.connect(url)
    try:
        assert await db.fetchval("SELECT to_regclass($1) IS NOT NULL", FUTURE)
        await db.execute(f"DROP INDEX {FUTURE_INDEX}")
    finally:
        await db.close()


def _collector(config: Path, *command: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", COLLECTOR, "--log-format", "json", *command, "-c", str(config)]
    return subprocess.run(
        argv, cwd=config.parent, capture_output=True, text=True, check=False, timeout=120
    )


def _events(stderr: str) -> list[str]:
    return [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]


@pytest.mark.parametrize(
    "command",
    [
        ["export", "--format", "csv", "--gateway", NANCHANG.gateway, "--from", FROM, "--to", TO],
        ["db", "upgrade", "--json"],
    ],
    ids=["export", "upgrade-json"],
)
async def test_a_command_prints_its_data_alone_and_logs_on_stderr(
    command: list[str], postgres_url: str, tmp_path: Path
) -> None:
    """Before: the open's log line came first on stdout: an export's CSV began with it, and
    `db upgrade --json` printed two lines, no JSON document ("Extra data: line 2 column 1")."""
    await _future_without_its_index(postgres_url)
    config = write_collector_config(tmp_path, broker_port=1, api_port=1, storage_url=postgres_url)
    done = await asyncio.to_thread(_collector, config, *command)
    assert done.returncode == 0, done.stderr
    if command[0] == "export":
        header, *rows = done.stdout.splitlines()
        assert (header, len(rows)) == (",".join(READING_COLUMNS), 3), done.stdout
    else:
        assert json.loads(done.stdout) == {"from": SCHEMA_VERSION, "to": SCHEMA_VERSION}
    assert "future_partition_indexed" in _events(done.stderr)


def test_backfill_json_prints_json_alone_and_logs_the_outbox_found_on_stderr(
    tmp_path: Path,
) -> None:
    """Before: `edge-agent` set no logging up outside `run`, so structlog's own default printed
    the outbox's recovery (`outbox_corrupt_moved_aside`) on stdout, pretty, ahead of the JSON,
    whatever --log-format said."""
    site = write_configs(tmp_path, "tankfarm", "mqtt://127.0.0.1:1", 1, 1)
    agent = [sys.executable, "-c", AGENT, "--log-format", "json"]
    subprocess.run([*agent, "keys", "init", "-c", str(site)], check=True, capture_output=True)
    outbox = load_site_config(site).outbox.path
    outbox.parent.mkdir(parents=True, exist_ok=True)
    outbox.write_bytes(b"not an SQLite database, whatever a restore left" * 100)
    csv = tmp_path / "log.csv"
    csv.write_text("point,t,value\nT001-LT-01,2024-03-01 08:00:00,5.25\n", encoding="utf-8")
    done = subprocess.run(
        [*agent, "backfill", "-c", str(site), "--csv", str(csv), "--json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["imported"] == 1, done.stdout
    assert _events(done.stderr) == ["outbox_corrupt_moved_aside"]
