"""Where the collector keeps gateways, blocks, readings, ingest state and the audit trail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from collector.storage.base import Storage, UnsupportedStorageError
from collector.storage.postgres import SCHEMES as POSTGRES_SCHEMES
from collector.storage.postgres import PostgresStorage
from collector.storage.postgres.retention import prune_database as postgres_prune
from collector.storage.postgres.schema import upgrade as postgres_upgrade
from collector.storage.retention import PruneReport, RetentionPolicy
from collector.storage.sqlite import SqliteStorage, sqlite_path
from collector.storage.sqlite.retention import prune as sqlite_prune
from collector.storage.sqlite.upgrade import upgrade as sqlite_upgrade


@asynccontextmanager
async def open_storage(url: str, base_dir: Path | None = None) -> AsyncIterator[Storage]:
    """Open the storage a URL names: `sqlite:///path` or `postgresql://user@host/db`.

    Relative SQLite paths are under `base_dir`; `postgres://` works as `postgresql://`.
    """
    scheme = url.partition(":")[0]
    if scheme == "sqlite":
        storage: Storage = await SqliteStorage.open(sqlite_path(url, base_dir))
    elif scheme in POSTGRES_SCHEMES:
        storage = await PostgresStorage.open(url)
    else:
        raise UnsupportedStorageError(f"storage url {url!r} names no known backend")
    try:
        yield storage
    finally:
        await storage.close()


async def upgrade_storage(url: str, base_dir: Path | None = None) -> tuple[int, int]:
    """Apply the schema migrations the URL's database lacks; (version before, after)."""
    scheme = url.partition(":")[0]
    if scheme == "sqlite":
        return await sqlite_upgrade(sqlite_path(url, base_dir))
    if scheme in POSTGRES_SCHEMES:
        return await postgres_upgrade(url)
    raise UnsupportedStorageError(f"storage url {url!r} names no known backend")


async def prune_storage(url: str, policy: RetentionPolicy, now: float) -> PruneReport:
    """Roll up and drop the expired months of the URL's database (a connection of its own)."""
    scheme = url.partition(":")[0]
    if scheme == "sqlite":
        return await sqlite_prune(sqlite_path(url), policy, now)
    if scheme in POSTGRES_SCHEMES:
        return await postgres_prune(url, policy, now)
    raise UnsupportedStorageError(f"storage url {url!r} names no known backend")


__all__ = ["Storage", "open_storage", "prune_storage", "upgrade_storage"]
