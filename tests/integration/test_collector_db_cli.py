"""`collector db upgrade`: numbered migrations applied on demand, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from click.testing import CliRunner, Result

from collector.cli import main
from collector.storage.postgres.schema import SCHEMA_VERSION as POSTGRES_VERSION
from collector.storage.sqlite import SCHEMA_VERSION as SQLITE_VERSION
from tests.support.postgres import PostgresDatabases


def _config(folder: Path, url: str) -> Path:
    path = folder / "collector.yaml"
    path.write_text(
        'broker: "mqtt://127.0.0.1:1883"\n'
        f'storage: {{url: "{url}"}}\n'
        "signing: {key_file: keys/collector.key}\n"
        'api: {listen: "127.0.0.1:8080"}\n',
        encoding="utf-8",
    )
    return path


def _upgrade(config: Path, *extra: str) -> Result:
    return CliRunner().invoke(main, ["db", "upgrade", "-c", str(config), *extra])


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    """An empty database of each backend, with the schema version this code brings."""
    if request.param == "sqlite":
        yield "sqlite:///state/collector.db", SQLITE_VERSION
        return
    databases: PostgresDatabases = request.getfixturevalue("postgres_databases")
    url = databases.create(migrated=False)
    yield url, POSTGRES_VERSION
    databases.drop(url)


def test_an_empty_database_is_brought_to_the_current_schema_then_left_alone(
    tmp_path: Path, empty_url: tuple[str, int]
) -> None:
    url, version = empty_url
    config = _config(tmp_path, url)
    first = _upgrade(config)
    assert first.exit_code == 0, first.output
    assert first.output == f"schema 0 -> {version}: upgraded\n"
    again = _upgrade(config, "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.output) == {"from": version, "to": version}


def test_a_database_newer_than_the_code_is_refused_with_exit_1(
    tmp_path: Path, postgres_url: str
) -> None:
    async def bump() -> None:
        db = await asyncpg.connect(postgres_url)
        try:
            await db.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, now())",
                POSTGRES_VERSION + 1,
            )
        finally:
            await db.close()

    asyncio.run(bump())
    result = _upgrade(_config(tmp_path, postgres_url))
    assert result.exit_code == 1
    assert "newer" in result.output


def test_a_config_mistake_is_exit_2_before_touching_any_database(tmp_path: Path) -> None:
    config = tmp_path / "collector.yaml"
    config.write_text("broker: mqtt://127.0.0.1:1883\nstorage: {url: mysql://x}\n", "utf-8")
    result = _upgrade(config)
    assert result.exit_code == 2
    assert "storage" in result.output


def test_a_sqlite_file_newer_than_the_code_names_both_versions_and_the_remedy(
    tmp_path: Path,
) -> None:
    path = tmp_path / "collector.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SQLITE_VERSION + 1}")
    result = _upgrade(_config(tmp_path, f"sqlite:///{path}"))
    assert result.exit_code == 1
    assert (
        f"database schema {SQLITE_VERSION + 1} is newer than this collector's {SQLITE_VERSION}:"
        " run a collector at least as new as the one that upgraded it"
    ) in result.output


def test_the_help_names_the_upgrade_that_is_not_safe_beside_running_collectors() -> None:
    result = CliRunner().invoke(main, ["db", "upgrade", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "except SQLite schema 17 / PostgreSQL migration 13" in text
    assert "stop every collector of the database first" in text
