"""The live feed on SQLite, write side: journal rows inside the ingest transaction."""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite

from collector.feed.core import JournalEntry


async def write_journal(db: aiosqlite.Connection, entries: Sequence[JournalEntry]) -> None:
    """Append `entries`, after the batch's readings (their ids are in `readings_through`)."""
    await db.executemany(
        "INSERT INTO feed (kind, gateway, point, readings_through, payload, at, active)"
        " VALUES (?, ?, ?, (SELECT coalesce(max(id), 0) FROM readings), ?, ?, ?)",
        [(e.kind.value, e.gateway, e.point, e.payload, e.at, e.active) for e in entries],
    )
