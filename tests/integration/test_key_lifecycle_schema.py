"""Schema 11 (SQLite) and migration 5 (PostgreSQL): gateway keys keep their lifecycle.

A key registered before the upgrade is kept as it was (valid, not retired, announced by
nobody: an administrator added it) and still grants its gateway's blocks.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import asyncpg

from collector.storage import open_storage
from collector.storage.postgres.schema import SCHEMA_VERSION as POSTGRES_SCHEMA
from collector.storage.postgres.schema import upgrade as postgres_upgrade
from collector.storage.sqlite.schema import SCHEMA_VERSION as SQLITE_SCHEMA
from collector.storage.sqlite.upgrade import upgrade as sqlite_upgrade
from tests.support.collector_client import sim_gateway
from tests.support.postgres import PostgresDatabases, apply_first_migrations

GW = sim_gateway(61)

_KEYS_10 = """
CREATE TABLE gateways (
    gateway TEXT PRIMARY KEY, enterprise TEXT NOT NULL, district TEXT NOT NULL,
    registered_at REAL NOT NULL
);
CREATE TABLE gateway_keys (
    kid TEXT PRIMARY KEY, gateway TEXT NOT NULL REFERENCES gateways (gateway),
    alg TEXT NOT NULL, public_pem BLOB NOT NULL, added_at REAL NOT NULL, revoked_at REAL
);
PRAGMA user_version = 10;
"""


async def _kept_as_registered(url: str) -> None:
    async with open_storage(url) as storage:
        [key] = await storage.keys(GW.gateway)
        assert (key.kid, key.added_at, key.revoked_at) == (GW.key.kid, 5.0, None)
        assert (key.retired_at, key.announced_by, key.announced_epoch, key.announced_seq) == (
            None,
            None,
            None,
            None,
        )
        grants = await storage.grants({GW.key.kid})
        assert grants[GW.key.kid].owner.gateway == GW.gateway


async def test_a_schema_10_file_keeps_its_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    public = GW.key.public()
    with closing(sqlite3.connect(path)) as db:
        db.executescript(_KEYS_10)
        db.execute(
            "INSERT INTO gateways VALUES (?, ?, ?, 1.0)", (GW.gateway, GW.enterprise, GW.district)
        )
        db.execute(
            "INSERT INTO gateway_keys VALUES (?, ?, ?, ?, 5.0, NULL)",
            (public.kid, GW.gateway, public.alg, public.public_pem()),
        )
        db.commit()
    assert await sqlite_upgrade(path) == (10, SQLITE_SCHEMA)
    await _kept_as_registered(f"sqlite:///{path}")


async def test_migration_5_keeps_the_keys_of_a_version_4_database(
    postgres_databases: PostgresDatabases,
) -> None:
    url = postgres_databases.create(migrated=False)
    public = GW.key.public()
    try:
        db = await asyncpg.connect(url)
        try:
            await apply_first_migrations(db, 4)
            await db.execute(
                "INSERT INTO gateways VALUES ($1, $2, $3, 1.0)",
                GW.gateway,
                GW.enterprise,
                GW.district,
            )
            await db.execute(
                "INSERT INTO gateway_keys VALUES ($1, $2, $3, $4, 5.0, NULL)",
                public.kid,
                GW.gateway,
                public.alg,
                public.public_pem(),
            )
        finally:
            await db.close()
        assert await postgres_upgrade(url) == (4, POSTGRES_SCHEMA)
        await _kept_as_registered(url)
    finally:
        postgres_databases.drop(url)
