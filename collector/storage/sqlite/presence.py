"""Presence intervals on SQLite, kept inside the ingest transaction (GET /v1/quality)."""

from __future__ import annotations

from collections.abc import Collection

import aiosqlite

from collector.model import IngestBatch
from collector.quality.core import Presence, advance_presence, signs
from collector.storage.sqlite.sql import chunks, values


async def _newest(db: aiosqlite.Connection, gateways: Collection[str]) -> dict[str, Presence]:
    """Each gateway's latest interval (an index seek on (gateway, until) each)."""
    found: dict[str, Presence] = {}
    for chunk in chunks(sorted(set(gateways))):
        rows = await db.execute_fetchall(
            f"WITH k (gateway) AS (VALUES {values(1, len(chunk))})"
            " SELECT p.id, p.gateway, p.since, p.until FROM k CROSS JOIN presence p"
            " ON p.id = (SELECT x.id FROM presence x WHERE x.gateway = k.gateway"
            " ORDER BY x.until DESC LIMIT 1)",
            chunk,
        )
        found.update((row[1], Presence(row[1], row[2], row[3], row[0])) for row in rows)
    return found


async def record_presence(db: aiosqlite.Connection, batch: IngestBatch) -> None:
    """Extend or open each gateway's interval by the batch's signs of life and statuses."""
    found = signs(batch)
    if not found:
        return
    newest = await _newest(db, {sign.gateway for sign in found})
    written = advance_presence(newest, found, batch.presence_window)
    await db.executemany(
        "UPDATE presence SET since = ?, until = ? WHERE id = ?",
        [(p.since, p.until, p.id) for p in written if p.id],
    )
    await db.executemany(
        "INSERT INTO presence (gateway, since, until) VALUES (?, ?, ?)",
        [(p.gateway, p.since, p.until) for p in written if not p.id],
    )
