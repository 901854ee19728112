"""PostgreSQL storage: many collectors on one database (DESIGN 9).

Modules: `schema` (numbered migrations, `upgrade`), `partitions` (monthly `readings`
partitions), `locks` (per-gateway advisory locks), `registry`, `ingest` and `queries` (the
Storage operations on one connection), `store` (`PostgresStorage`: the pool and the
transactions), `connection` (URLs and the one place driver errors become StorageError).
"""

from __future__ import annotations

from collector.storage.postgres.connection import SCHEMES
from collector.storage.postgres.schema import SCHEMA_VERSION, upgrade
from collector.storage.postgres.store import PostgresStorage

__all__ = ["SCHEMA_VERSION", "SCHEMES", "PostgresStorage", "upgrade"]
