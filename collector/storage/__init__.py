"""Where the collector keeps gateways, blocks, readings, ingest state and the audit trail.

The PostgreSQL back end (and asyncpg) is imported only for a `postgresql://` URL: a command
on SQLite, or on no database, does not wait for it to load.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from collector.storage.base import Storage, UnsupportedStorageError
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
    else:
        from collector.storage.postgres import SCHEMES, PostgresStorage  # noqa: PLC0415

        if scheme not in SCHEMES:
            raise UnsupportedStorageError(f"storage url {url!r} names no known backend")
        storage = await PostgresStorage.open(url)
    try:
        yield storage
    finally:
        await storage.close()


async def upgrade_storage(url: str, base_dir: Path | None = None) -> tuple[int, int]:
    """Apply the schema migrations the URL's database lacks; (version before, after)."""
    scheme = url.partition(":")[0]
    if scheme == "sqlite":
        return await sqlite_upgrade(sqlite_path(url, base_dir))
    from collector.storage.postgres import SCHEMES, upgrade  # noqa: PLC0415 - see open_storage

    if scheme in SCHEMES:
        return await upgrade(url)
    raise UnsupportedStorageError(f"storage url {url!r} names no known backend")


async def prune_storage(url: str, policy: RetentionPolicy, now: float) -> PruneReport:
    """Roll up and drop the expired months of the URL's database (a connection of its own)."""
    scheme = url.partition(":")[0]
    if scheme == "sqlite":
        return await sqlite_prune(sqlite_path(url), policy, now)
    from collector.storage.postgres import SCHEMES  # noqa: PLC0415 - see open_storage
    from collector.storage.postgres.retention import prune_database  # noqa: PLC0415

    if scheme in SCHEMES:
        return await prune_database(url, policy, now)
    raise UnsupportedStorageError(f"storage url {url!r} names no known backend")


__all__ = ["Storage", "open_storage", "prune_storage", "upgrade_storage"]
