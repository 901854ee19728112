"""The live feed on SQLite, write side: journal rows inside the ingest transaction."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import aiosqlite

from collector.feed.core import JournalEntry
from collector.storage.sqlite.sql import chunks


async def held_statuses(
    db: aiosqlite.Connection, gateways: Collection[str]
) -> dict[str, tuple[bool, float]]:
    """The stored (online, last_seen) of each of `gateways` that has a status."""
    found: dict[str, tuple[bool, float]] = {}
    for chunk in chunks(sorted(set(gateways))):
        rows = await db.execute_fetchall(
            "SELECT gateway, online, last_seen FROM gateway_status"
            f" WHERE gateway IN ({', '.join('?' * len(chunk))})",
            chunk,
        )
        found.update((row[0], (bool(row[1]), float(row[2]))) for row in rows)
    return found


async def write_journal(db: aiosqlite.Connection, entries: Sequence[JournalEntry]) -> None:
    """Append `entries`, after the batch's readings (their ids are in `readings_through`)."""
    await db.executemany(
        "INSERT INTO feed (kind, gateway, point, readings_through, payload, at)"
        " VALUES (?, ?, ?, (SELECT coalesce(max(id), 0) FROM readings), ?, ?)",
        [(e.kind.value, e.gateway, e.point, e.payload, e.at) for e in entries],
    )
