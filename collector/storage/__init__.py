"""Where the collector keeps gateways, blocks, readings, ingest state and the audit trail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from collector.storage.base import Storage, UnsupportedStorageError
from collector.storage.postgres import SCHEMES as POSTGRES_SCHEMES
from collector.storage.postgres import PostgresStorage
from collector.storage.sqlite import SqliteStorage, sqlite_path


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


__all__ = ["Storage", "open_storage"]
