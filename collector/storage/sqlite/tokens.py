"""API tokens in SQLite (collector.tokens): the hash, never the secret; admin rows audited.

Writes run inside the caller's write transaction, with their audit row.
"""

from __future__ import annotations

import json

import aiosqlite

from collector.audit.chain import Action, ActionEntry
from collector.storage import audit
from collector.storage.base import RegistryError
from collector.storage.sqlite.audit import SqliteChain
from collector.tokens import StoredToken


async def add(db: aiosqlite.Connection, token: StoredToken, digest: str, actor: str) -> None:
    """Store a new token by its hash; RegistryError when its name is taken."""
    taken = await db.execute_fetchall("SELECT 1 FROM api_tokens WHERE name = ?", (token.name,))
    if list(taken):
        raise RegistryError(f"a token named {token.name!r} exists already (revoked ones too)")
    await db.execute(
        "INSERT INTO api_tokens (name, hash, districts, created_at) VALUES (?, ?, ?, ?)",
        (token.name, digest, json.dumps(list(token.districts)), token.created_at),
    )
    detail = f"token {token.name} added for districts {', '.join(token.districts)}"
    entry = ActionEntry(token.created_at, Action.TOKEN_ADD, actor, detail)
    await audit.append(SqliteChain(db), actions=[entry], now=token.created_at)


async def revoke(db: aiosqlite.Connection, name: str, at: float, actor: str) -> bool:
    """Revoke a token; False when it was revoked already, RegistryError when unknown."""
    cursor = await db.execute(
        "UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (at, name)
    )
    if not cursor.rowcount:
        known = await db.execute_fetchall("SELECT 1 FROM api_tokens WHERE name = ?", (name,))
        if not list(known):
            raise RegistryError(f"no token is named {name!r}")
        return False
    entry = ActionEntry(at, Action.TOKEN_REVOKE, actor, f"token {name} revoked")
    await audit.append(SqliteChain(db), actions=[entry], now=at)
    return True
