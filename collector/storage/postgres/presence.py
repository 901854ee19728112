"""Presence intervals on PostgreSQL, kept inside the ingest transaction (GET /v1/quality).

The same decisions as SQLite (`collector.quality.core.advance_presence`); the batch holds its
gateways' advisory locks, so the newest interval read here is still the newest at COMMIT.
"""

from __future__ import annotations

from collections.abc import Collection

from collector.model import IngestBatch
from collector.quality.core import Presence, advance_presence, signs
from collector.storage.postgres.connection import Db


async def _newest(db: Db, gateways: Collection[str]) -> dict[str, Presence]:
    """Each gateway's latest interval (an index seek on (gateway, until) each)."""
    # Ties on `until` go to the newest row, as SQLite's backward walk of its index gives.
    found = await db.fetch(
        "SELECT p.id, p.gateway, p.since, p.until FROM unnest($1::text[]) AS k (gateway)"
        " CROSS JOIN LATERAL (SELECT x.id, x.gateway, x.since, x.until FROM presence x"
        " WHERE x.gateway = k.gateway ORDER BY x.until DESC, x.id DESC LIMIT 1) p",
        sorted(set(gateways)),
    )
    return {row[1]: Presence(row[1], row[2], row[3], row[0]) for row in found}


async def record_presence(db: Db, batch: IngestBatch) -> None:
    """Extend or open each gateway's interval by the batch's signs of life and statuses."""
    found = signs(batch)
    if not found:
        return
    newest = await _newest(db, {sign.gateway for sign in found})
    written = advance_presence(newest, found, batch.presence_window)
    changed = [(p.since, p.until, p.id) for p in written if p.id]
    if changed:
        await db.executemany("UPDATE presence SET since = $1, until = $2 WHERE id = $3", changed)
    opened = [(p.gateway, p.since, p.until) for p in written if not p.id]
    if opened:
        await db.executemany(
            "INSERT INTO presence (gateway, since, until) VALUES ($1, $2, $3)", opened
        )
