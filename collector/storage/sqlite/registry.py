"""Gateways and their keys: registration, revocation and lookups.

`register` and `revoke` run inside the caller's write transaction; the lookups take the
reader connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

import aiosqlite

from collector.model import AuditEntry, Gateway, GatewayKey, IncomingBlock, KeyGrant
from collector.storage.keys import check_same_gateway, check_same_key, refusal, retire_at
from collector.storage.records import (
    GATEWAY_COLUMNS,
    GRANT_SELECT,
    INSERT_ANNOUNCED_KEY,
    KEY_COLUMNS,
    announced_key_values,
    gateway_key,
    grant,
)
from collector.storage.records import gateway as gateway_row
from collector.storage.sqlite.sql import chunks


async def register(db: aiosqlite.Connection, gateway: Gateway, key: GatewayKey) -> None:
    """Register a gateway (or find it registered identically) and add a key to it."""
    rows = await db.execute_fetchall(
        f"SELECT {GATEWAY_COLUMNS} FROM gateways WHERE gateway = ?",
        (gateway.gateway,),
    )
    if rows:
        check_same_gateway(gateway_row(next(iter(rows))), gateway)
    else:
        await db.execute(
            "INSERT INTO gateways (gateway, enterprise, district, registered_at)"
            " VALUES (?, ?, ?, ?)",
            (gateway.gateway, gateway.enterprise, gateway.district, gateway.registered_at),
        )
    keys = await db.execute_fetchall(
        f"SELECT {KEY_COLUMNS} FROM gateway_keys WHERE kid = ?", (key.kid,)
    )
    if keys:
        check_same_key(gateway_key(next(iter(keys))), key)
        return
    await db.execute(
        "INSERT INTO gateway_keys (kid, gateway, alg, public_pem, added_at, revoked_at)"
        " VALUES (?, ?, ?, ?, ?, NULL)",
        (key.kid, key.gateway, key.alg, key.public_pem, key.added_at),
    )


async def revoke(
    db: aiosqlite.Connection, gateway: str, kid: str | None, at: float
) -> tuple[str, ...]:
    """Revoke one key (or every active key) of a gateway; return the kids revoked."""
    query = "SELECT kid FROM gateway_keys WHERE gateway = ? AND revoked_at IS NULL"
    params: tuple[object, ...] = (gateway,)
    if kid is not None:
        query += " AND kid = ?"
        params = (gateway, kid)
    kids = tuple(row[0] for row in await db.execute_fetchall(query + " ORDER BY kid", params))
    await db.executemany(
        "UPDATE gateway_keys SET revoked_at = ? WHERE kid = ?", [(at, k) for k in kids]
    )
    return kids


async def _rows_among(
    db: aiosqlite.Connection, query: str, ids: Collection[str]
) -> list[sqlite3.Row]:
    """The rows of `query` (ending in `IN`) for each of `ids`, asked for a chunk at a time."""
    found: list[sqlite3.Row] = []
    for chunk in chunks(sorted(set(ids))):
        # Its errors are the store's to translate (SqliteStorage._connection), once.
        found.extend(await db.execute_fetchall(f"{query} ({', '.join('?' * len(chunk))})", chunk))
    return found


async def find_gateways(db: aiosqlite.Connection, ids: Collection[str]) -> Mapping[str, Gateway]:
    """The registered gateways among `ids`."""
    rows = await _rows_among(db, f"SELECT {GATEWAY_COLUMNS} FROM gateways WHERE gateway IN", ids)
    return {row[0]: gateway_row(row) for row in rows}


async def grants(db: aiosqlite.Connection, kids: Collection[str]) -> Mapping[str, KeyGrant]:
    """The registered keys among `kids`, each with its owning gateway."""
    rows = await _rows_among(db, f"{GRANT_SELECT} WHERE k.kid IN", kids)
    return {row[0]: grant(row) for row in rows}


async def adopt_keys(
    db: aiosqlite.Connection, blocks: Sequence[IncomingBlock], overlap: float
) -> list[AuditEntry]:
    """Keep the keys the newly stored `blocks` announce, retire the keys they replace.

    Inside the batch's write transaction; returns an audit row per key the registry refuses.
    """
    refused: list[AuditEntry] = []
    for announced in (a for block in blocks for a in block.entries.keys):
        key = announced.key
        rows = list(
            await db.execute_fetchall(
                f"SELECT {KEY_COLUMNS} FROM gateway_keys WHERE kid = ?", (key.kid,)
            )
        )
        why = refusal(gateway_key(rows[0]) if rows else None, announced)
        if why is not None:
            refused.append(replace(announced.audit, detail=f"{announced.audit.detail}: {why}"))
            continue
        if not rows:
            await db.execute(INSERT_ANNOUNCED_KEY, announced_key_values(key))
        await db.execute(
            "UPDATE gateway_keys SET retired_at = ?"
            " WHERE kid = ? AND gateway = ? AND retired_at IS NULL",
            (retire_at(announced, overlap), announced.replaces, key.gateway),
        )
    return refused
