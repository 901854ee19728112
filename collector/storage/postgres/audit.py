"""The audit chain's connection on PostgreSQL (its steps: `collector.storage.audit`).

Several collectors write one database, so every step that writes the chain first takes
AUDIT_LOCK (a transaction advisory lock, held to COMMIT): the head each one reads is then the
head the last one committed, and seqs are handed out once. An ingest takes it after its
gateways' locks and before the feed lock; admin actions and retention take it alone. Each
step runs inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from collector.storage.postgres.connection import Db, execute_many
from collector.storage.postgres.locks import AUDIT_LOCK
from collector.storage.postgres.rows import numbered
from collector.storage.records import Row


class PostgresChain:
    """`collector.storage.audit.ChainDb` on one asyncpg connection (placeholders numbered)."""

    larger = "greatest"

    def __init__(self, db: Db) -> None:
        self._db = db

    async def lock(self) -> None:
        """Wait for every other writer of the chain; held until this transaction ends."""
        await self._db.execute("SELECT pg_advisory_xact_lock($1)", AUDIT_LOCK)

    async def fetch(self, sql: str, params: Sequence[object], /) -> Sequence[Row]:
        """Its records, the `?` numbered as `$n`."""
        return await self._db.fetch(numbered(sql), *params)

    async def execute(self, sql: str, params: Sequence[object], /) -> int:
        """The row count that ends the command tag ("DELETE 3", "INSERT 0 1")."""
        status = await self._db.execute(numbered(sql), *params)
        return int(status.rsplit(" ", 1)[1])

    async def execute_many(self, sql: str, rows: Sequence[Sequence[object]], /) -> None:
        """One executemany (`execute_many`: a cancellation ends it), `?` numbered as `$n`."""
        await execute_many(self._db, numbered(sql), rows)
