"""The audit chain's connection on SQLite (its steps: `collector.storage.audit`).

Every step runs inside the caller's write transaction (`BEGIN IMMEDIATE`), which already
serializes every writer of the file: the chain's lock is that transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite

from collector.storage.records import Row


class SqliteChain:
    """`collector.storage.audit.ChainDb` on one aiosqlite connection."""

    larger = "max"

    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    async def lock(self) -> None:
        """Nothing more: the caller's write transaction holds the file's write lock."""

    async def fetch(self, sql: str, params: Sequence[object], /) -> Sequence[Row]:
        """Its rows, read on the caller's connection."""
        return list(await self._db.execute_fetchall(sql, params))

    async def execute(self, sql: str, params: Sequence[object], /) -> int:
        """The cursor's rowcount."""
        cursor = await self._db.execute(sql, params)
        return int(cursor.rowcount)

    async def execute_many(self, sql: str, rows: Sequence[Sequence[object]], /) -> None:
        """One executemany: a single thread hop for all of `rows`."""
        await self._db.executemany(sql, rows)
