"""Schema 10 (SQLite) and migration 4 (PostgreSQL): the audit chain and the token table.

Audit rows written before the upgrade are kept, open (not chained yet), and chained by the
first seal after it.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

from collector.audit.chain import AuditKind
from collector.storage.postgres.schema import SCHEMA_VERSION as POSTGRES_SCHEMA
from collector.storage.postgres.schema import upgrade as postgres_upgrade
from collector.storage.sqlite.schema import SCHEMA_VERSION as SQLITE_SCHEMA
from collector.storage.sqlite.upgrade import upgrade as sqlite_upgrade
from tests.support.postgres import (
    PostgresDatabases,
    apply_first_migrations,
    check_values,
    sql_rows,
    sqlite_file,
)

_AUDIT_9 = """
CREATE TABLE audit (
    id INTEGER PRIMARY KEY, at REAL NOT NULL, gateway TEXT, topic TEXT NOT NULL,
    reason TEXT NOT NULL, detail TEXT NOT NULL, payload_hash TEXT NOT NULL
);
INSERT INTO audit (at, gateway, topic, reason, detail, payload_hash)
    VALUES (1.5, 'gw', 'gz/1/x', 'malformed', 'old row', 'h');
PRAGMA user_version = 9;
"""

_NEW_COLUMNS = "kind, source, minute, count, last_at, chain_seq, prev, hash"


async def test_a_schema_9_file_keeps_its_audit_rows_open_for_the_first_seal(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    url = sqlite_file(path, _AUDIT_9)
    assert await sqlite_upgrade(path) == (9, SQLITE_SCHEMA)
    assert await sql_rows(url, f"SELECT detail, {_NEW_COLUMNS} FROM audit") == [
        ("old row", "rejection", "", None, 1, None, None, None, None)
    ]
    assert await sql_rows(url, "SELECT count(*) FROM audit_chain") == [(0,)]
    assert await sql_rows(url, "SELECT count(*) FROM api_tokens") == [(0,)]
    # The upgrade's own CHECK (`_AUDIT_KINDS`), not the schema's: both allow what is written.
    assert await check_values(url, "audit", "kind") == {k.value for k in AuditKind}


async def test_migration_4_keeps_the_audit_rows_of_a_version_3_database(
    postgres_databases: PostgresDatabases,
) -> None:
    url = postgres_databases.create(migrated=False)
    try:
        db = await asyncpg.connect(url)
        try:
            await apply_first_migrations(db, 3)
            await db.execute(
                "INSERT INTO audit (at, gateway, topic, reason, detail, payload_hash)"
                " VALUES (1.5, 'gw', 'gz/1/x', 'malformed', 'old row', 'h')"
            )
        finally:
            await db.close()
        assert await postgres_upgrade(url) == (3, POSTGRES_SCHEMA)
        assert await sql_rows(url, f"SELECT detail, {_NEW_COLUMNS} FROM audit") == [
            ("old row", "rejection", "", None, 1, None, None, None, None)
        ]
        assert await sql_rows(url, "SELECT count(*) FROM api_tokens") == [(0,)]
    finally:
        postgres_databases.drop(url)
